"""Getting generated traffic to the gateway: straight over HTTP, or through the real agent.

Both keep the order the lateness plan relies on (``lateness.py``): at most ``in_flight``
requests are open, and a request starts only once the one ``in_flight`` places before it
has completed. Every event must be accepted: a refused batch or a rejected event makes the
ground truth wrong, so it raises ``LoadgenError`` instead of being counted.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import orjson

from agent.sender import BATCH_ID_HEADER, Transport
from agent.transport import BATCH_PATH, HttpResponse
from turnstile_cli.loadgen.bodies import encode_bodies, event_dicts
from turnstile_cli.loadgen.generator import Traffic

_GZIP_LEVEL = 5
_ENCODE_AHEAD = 32  # batches encoded per Arrow call
_RETRYABLE = frozenset({429, 500, 502, 503, 504})


class LoadgenError(Exception):
    """The gateway did not take the traffic as generated."""


@dataclass
class SendReport:
    """What a sender did; ``duplicate_batch_ids`` are the batches it sent twice."""

    requests: int = 0
    events: int = 0
    retries: int = 0
    seconds: float = 0.0
    duplicate_batch_ids: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class _Pacer:
    """``rate`` events per second on average (None: as fast as possible)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.sent = 0

    def wait(self, events: int) -> None:
        if self.rate:
            delay = self.start + self.sent / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.sent += events


def _keys_for(traffic: Traffic, write_keys: Mapping[str, str]) -> list[str]:
    missing = [p for p in traffic.spec.projects if p not in write_keys]
    if missing:
        raise LoadgenError(f"no write key for project(s) {', '.join(missing)}")
    return [write_keys[p] for p in traffic.spec.projects]


def _check_accepted(answer: bytes, expected: int, batch_id: str) -> None:
    body = orjson.loads(answer)
    rejected = body.get("rejected") or []
    if rejected or body.get("accepted") != expected:
        raise LoadgenError(f"batch {batch_id}: accepted {body.get('accepted')} of {expected};"
                           f" first rejection: {rejected[:1]}")


class DirectSender:
    """gzip'd JSON batches over HTTP with ``X-Turnstile-Batch-Id``, ``in_flight`` at a time."""

    def __init__(self, url: str, write_keys: Mapping[str, str], *, timeout_s: float = 30.0,
                 max_retry_s: float = 60.0) -> None:
        self.url = url.rstrip("/") + BATCH_PATH
        self.write_keys = dict(write_keys)
        self.timeout_s = timeout_s
        self.max_retry_s = max_retry_s
        self._retries = 0
        self._lock = threading.Lock()

    def send(self, traffic: Traffic, rate: float | None = None) -> SendReport:
        keys = _keys_for(traffic, self.write_keys)
        self._retries = 0
        c = traffic.spec.in_flight
        sends = traffic.sends.tolist()
        copies_left = Counter(sends)
        bodies: dict[int, bytes] = {}
        encoded_to = 0
        report = SendReport(duplicate_batch_ids=[traffic.batch_ids[b]
                                                 for b in traffic.duplicated_batches])
        pacer = _Pacer(rate)
        started = time.monotonic()
        limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
        with httpx.Client(timeout=self.timeout_s, limits=limits) as client, \
                ThreadPoolExecutor(c, thread_name_prefix="loadgen") as pool:
            futures: list[Future[None]] = []
            for slot, batch in enumerate(sends):
                if slot >= c:
                    futures[slot - c].result()  # the lateness plan needs this wait
                if batch >= encoded_to:
                    stop = min(traffic.batches, batch + _ENCODE_AHEAD)
                    bodies.update(zip(range(batch, stop),
                                      encode_bodies(traffic, batch, stop), strict=True))
                    encoded_to = stop
                copies_left[batch] -= 1
                body = bodies[batch] if copies_left[batch] else bodies.pop(batch)
                count = int(traffic.batch_offsets[batch + 1] - traffic.batch_offsets[batch])
                pacer.wait(count)
                futures.append(pool.submit(
                    self._post, client, body, keys[traffic.batch_project[batch]],
                    traffic.batch_ids[batch], count))
            for future in futures[max(0, len(futures) - c):]:
                future.result()
        report.requests = len(sends)
        report.events = len(traffic)
        report.retries = self._retries
        report.seconds = time.monotonic() - started
        return report

    def _post(self, client: httpx.Client, body: bytes, key: str, batch_id: str,
              count: int) -> None:
        data = gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                   "X-Api-Key": key, BATCH_ID_HEADER: batch_id}
        deadline = time.monotonic() + self.max_retry_s
        attempt = 0
        while True:
            try:
                resp = client.post(self.url, content=data, headers=headers)
            except httpx.TransportError as exc:
                status, wait, detail = None, None, f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 202:
                    _check_accepted(resp.content, count, batch_id)
                    return
                status, detail = resp.status_code, resp.text[:300]
                wait = float(resp.headers.get("retry-after") or 0) or None
                if status not in _RETRYABLE:
                    raise LoadgenError(f"batch {batch_id}: HTTP {status}: {detail}")
            if time.monotonic() >= deadline:
                raise LoadgenError(f"batch {batch_id}: gave up after {attempt + 1} attempts:"
                                   f" {status or ''} {detail}")
            with self._lock:
                self._retries += 1
            time.sleep(wait if wait is not None else min(5.0, 0.2 * 2 ** attempt))
            attempt += 1


class DuplicatingTransport:
    """An agent transport that, when armed, posts the next batch twice (a lost 202).

    The agent cannot be told to retry a delivered batch; this stands in for the network
    losing the first answer, so the retry carries the same body and batch id.
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.armed = False
        self.duplicated: list[str] = []

    def arm(self) -> None:
        self.armed = True

    def post(self, body: bytes, headers: dict[str, str]) -> HttpResponse:
        response = self.inner.post(body, headers)
        if self.armed and 200 <= response.status < 300:
            self.armed = False
            self.duplicated.append(headers[BATCH_ID_HEADER])
            response = self.inner.post(body, headers)
        return response

    def close(self) -> None:
        self.inner.close()


def send_via_agent(traffic: Traffic, url: str, write_keys: Mapping[str, str],
                   rate: float | None = None, timeout_s: float = 60.0) -> SendReport:
    """Through ``agent.Sender`` (one per project), waiting for each batch to be delivered.

    Waiting per batch makes sends sequential, which satisfies any ``in_flight`` plan.
    """
    from pydantic import SecretStr

    from agent import AgentSettings, Sender
    from agent.transport import HttpTransport

    keys = _keys_for(traffic, write_keys)
    transports: list[DuplicatingTransport] = []
    senders: list[Sender] = []
    for key in keys:
        settings = AgentSettings(url=url, write_key=SecretStr(key),
                                 batch_size=traffic.spec.batch_size,
                                 max_queue_events=max(100_000, 2 * traffic.spec.batch_size))
        transport = DuplicatingTransport(HttpTransport(url, settings.request_timeout_s))
        transports.append(transport)
        senders.append(Sender(settings, transport=transport))
    again = set(traffic.duplicated_batches)
    pacer = _Pacer(rate)
    started = time.monotonic()
    try:
        for batch in range(traffic.batches):
            p = int(traffic.batch_project[batch])
            if batch in again:
                transports[p].arm()
            events = event_dicts(traffic, batch)
            pacer.wait(len(events))
            record = senders[p].record
            for event in events:
                record(event)
            if not senders[p].flush(timeout_s):
                raise LoadgenError(f"agent did not deliver batch {batch} in {timeout_s:g} s")
    finally:
        for sender in senders:
            sender.close()
    report = SendReport(seconds=time.monotonic() - started)
    for project, sender in zip(traffic.spec.projects, senders, strict=True):
        stats = sender.stats()
        if stats.dropped or stats.invalid_events:
            raise LoadgenError(f"agent of {project}: {stats}")
        report.requests += stats.sent_batches
        report.events += stats.sent_events
        report.retries += stats.retries
    report.duplicate_batch_ids = [b for t in transports for b in t.duplicated]
    report.requests += len(report.duplicate_batch_ids)
    return report
