"""The batching sender: never blocks or breaks the host API.

``record(event)`` only appends to a bounded in-memory queue (a full queue drops the event
and counts it). A background thread turns the queue into gzip'd batches every
``batch_size`` events or ``flush_interval_s`` seconds and posts them one at a time,
retrying with exponential backoff and jitter, honouring ``Retry-After``. A batch keeps its
body, hence its event ids, and its batch id (``schemas.ingest_wire.BATCH_ID_HEADER``) across
retries, so
downstream can tell a retried batch from new data. ``close()`` (also run at exit) flushes
what is left within ``shutdown_timeout_s``.
"""

from __future__ import annotations

import atexit
import functools
import gzip
import itertools
import logging
import os
import secrets
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from agent.retry import Outcome, backoff_delay, classify
from agent.settings import AgentSettings
from agent.transport import HttpResponse, HttpTransport, TransportError
from schemas.ingest_wire import BATCH_ID_HEADER as BATCH_ID_HEADER  # loadgen imports it here
from schemas.ingest_wire import WRITE_KEY_HEADER, rejected_count

_log = logging.getLogger("turnstile.agent")
_GZIP_LEVEL: Final = 5


class Transport(Protocol):
    def post(self, body: bytes, headers: dict[str, str]) -> HttpResponse: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SenderStats:
    """Counters since the sender started; ``dropped_*`` say why events were lost."""

    queued: int
    sent_events: int
    sent_batches: int
    invalid_events: int
    retries: int
    dropped_queue_full: int
    dropped_refused: int
    dropped_retries_exhausted: int
    dropped_shutdown: int
    dropped_unencodable: int
    last_error: str | None

    @property
    def dropped(self) -> int:
        return (self.dropped_queue_full + self.dropped_refused
                + self.dropped_retries_exhausted + self.dropped_shutdown
                + self.dropped_unencodable)


@dataclass(slots=True)
class _Batch:
    batch_id: str
    body: bytes
    count: int
    first_try: float
    attempts: int = 0


class Sender:
    """Bounded queue + background flusher. Thread-safe ``record``; one sender per process."""

    def __init__(
        self, settings: AgentSettings | None = None, *, transport: Transport | None = None
    ) -> None:
        self.settings = s = settings or AgentSettings()
        self._transport: Transport = transport or HttpTransport(s.url, s.request_timeout_s)
        self._headers = {
            "Content-Type": "application/json",
            WRITE_KEY_HEADER: s.write_key.get_secret_value(),
            "User-Agent": "turnstile-agent/1",
        }
        if s.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._batch_size = s.batch_size
        self._max_queue = s.max_queue_events
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()  # guards moving events from the queue into a batch
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._pending: _Batch | None = None
        self._counts = dict.fromkeys(
            ("sent_events", "sent_batches", "invalid_events", "retries", "dropped_queue_full",
             "dropped_refused", "dropped_retries_exhausted", "dropped_shutdown",
             "dropped_unencodable"), 0)
        self._last_error: str | None = None
        self._new_id_source()
        self._thread = self._start_thread()
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))
        atexit.register(self._at_exit)

    # ---- the hot path (request threads) ---------------------------------------------------

    def new_event_id(self) -> str:
        """Unique without a syscall: a random per-process prefix and a counter."""
        return f"{self._id_prefix}{next(self._ids):x}"

    def record(self, event: dict[str, Any]) -> bool:
        """Queue one event; False (and counted) when the buffer is full. Never blocks."""
        queue = self._queue
        if len(queue) >= self._max_queue:
            with self._lock:
                self._counts["dropped_queue_full"] += 1
            return False
        queue.append(event)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    # ---- control ----------------------------------------------------------------------------

    def stats(self) -> SenderStats:
        with self._lock:
            queued = len(self._queue) + (self._pending.count if self._pending else 0)
            return SenderStats(queued=queued, last_error=self._last_error, **self._counts)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far was sent (or given up); True when idle."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._queue and self._pending is None:
                    return True
            self._wake.set()
            time.sleep(0.005)
        return False

    def close(self, timeout: float | None = None) -> None:
        """Send what is left (bounded by ``timeout``), then stop the thread. Idempotent."""
        if self._closing.is_set() and not self._thread.is_alive():
            return
        wait = self.settings.shutdown_timeout_s if timeout is None else timeout
        self._deadline = time.monotonic() + wait
        self._closing.set()
        self._wake.set()
        self._thread.join(wait + self.settings.request_timeout_s + 1.0)
        self._transport.close()

    def _at_exit(self) -> None:
        if self._thread.is_alive():
            self.close()

    # ---- the background thread --------------------------------------------------------------

    def _new_id_source(self) -> None:
        self._id_prefix = secrets.token_hex(8) + "-"
        self._ids = itertools.count(1)

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="turnstile-agent", daemon=True)
        thread.start()
        return thread

    def _after_fork(self) -> None:
        """A forked child starts empty with its own ids and thread (the parent sends its own)."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._queue.clear()
        self._pending = None
        self._new_id_source()
        self._thread = self._start_thread()

    def _run(self) -> None:
        interval = self.settings.flush_interval_s
        while True:
            closing = self._closing.is_set()
            if closing and time.monotonic() >= self._deadline:
                self._drop_rest_at_shutdown()
                return
            if self._pending is None and not closing and len(self._queue) < self._batch_size:
                self._wake.wait(interval)
            self._wake.clear()
            with self._lock:
                if self._pending is None:
                    self._pending = self._take_batch()
                batch = self._pending
            if batch is not None:
                self._attempt(batch)
            elif self._closing.is_set():
                return

    def _take_batch(self) -> _Batch | None:
        queue = self._queue
        n = min(len(queue), self._batch_size)
        if n == 0:
            return None
        events = [queue.popleft() for _ in range(n)]
        try:
            body = orjson.dumps(events)
        except orjson.JSONEncodeError:
            body, n = self._encode_each(events)
            if n == 0:
                return None
        if self.settings.gzip:
            body = gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
        return _Batch(uuid.uuid4().hex, body, n, time.monotonic())

    def _encode_each(self, events: list[dict[str, Any]]) -> tuple[bytes, int]:
        """The batch encoded event by event, without those orjson cannot encode.

        A recorded event holding a lone surrogate or a non-JSON value is dropped and
        counted, instead of ending the sender thread together with its whole batch.
        """
        parts = []
        for event in events:
            try:
                parts.append(orjson.dumps(event))
            except orjson.JSONEncodeError as exc:
                self._counts["dropped_unencodable"] += 1  # the caller holds the lock
                self._last_error = f"event not encodable as JSON: {exc}"
        if len(parts) < len(events):
            _log.error("dropped %d events that cannot be encoded as JSON: %s",
                       len(events) - len(parts), self._last_error)
        return b"[" + b",".join(parts) + b"]", len(parts)

    def _attempt(self, batch: _Batch) -> None:
        headers = {**self._headers, BATCH_ID_HEADER: batch.batch_id}
        response: HttpResponse | None = None
        try:
            response = self._transport.post(batch.body, headers)
            outcome = classify(response.status)
        except TransportError as exc:
            outcome = Outcome.RETRY
            self._last_error = str(exc)
        if outcome is Outcome.DELIVERED:
            assert response is not None  # noqa: S101 - DELIVERED needs a response
            self._done(batch, "sent_events", batch.count, invalid=_rejected_count(response.body))
            return
        if outcome is Outcome.REFUSED:
            assert response is not None  # noqa: S101 - REFUSED needs a response
            self._last_error = f"HTTP {response.status}: {response.body[:200]!r}"
            _log.error("gateway refused a batch of %d events: %s", batch.count, self._last_error)
            self._done(batch, "dropped_refused", batch.count)
            return
        if response is not None:
            self._last_error = f"HTTP {response.status}"
        now = time.monotonic()
        if now - batch.first_try >= self.settings.max_retry_s:
            _log.error("dropping a batch of %d events after %.0f s of retries",
                       batch.count, now - batch.first_try)
            self._done(batch, "dropped_retries_exhausted", batch.count)
            return
        delay = backoff_delay(batch.attempts, self.settings.backoff_base_s,
                              self.settings.backoff_max_s,
                              response.retry_after_s if response is not None else None)
        # The last attempt starts at the deadline, not after it: the speed layer remembers
        # a batch id only that long (schemas.retries).
        delay = min(delay, batch.first_try + self.settings.max_retry_s - now)
        batch.attempts += 1
        with self._lock:
            self._counts["retries"] += 1
        self._sleep(delay)

    def _done(self, batch: _Batch, counter: str, count: int, invalid: int = 0) -> None:
        with self._lock:
            self._counts[counter] += count - invalid
            if counter == "sent_events":
                self._counts["sent_batches"] += 1
                self._counts["invalid_events"] += invalid
            self._pending = None

    def _sleep(self, delay: float) -> None:
        if self._closing.is_set():
            time.sleep(max(0.0, min(delay, self._deadline - time.monotonic())))
        else:
            self._closing.wait(delay)  # close() cuts the wait short

    def _drop_rest_at_shutdown(self) -> None:
        with self._lock:
            lost = len(self._queue) + (self._pending.count if self._pending else 0)
            self._queue.clear()
            self._pending = None
            self._counts["dropped_shutdown"] += lost
        if lost:
            _log.error("dropped %d unsent events at shutdown", lost)


def _after_fork(ref: weakref.ref[Sender]) -> None:
    sender = ref()
    if sender is not None:
        sender._after_fork()


def _rejected_count(body: bytes) -> int:
    """Events the gateway refused as invalid inside an accepted (202) batch."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    return rejected_count(answer)
