"""The flow's PostgreSQL writes, applied by a thread beside the dataflow.

Applying a write inline (COPY + upsert) stalled the dataflow for ~20 % of its time while
PostgreSQL, on another core, did the work. Here the windows hand their emissions over
with ``submit`` and go on consuming; whatever is queued when the thread is free goes out
as one transaction (``MetricsWriter``), in the order it was submitted.

Durability is unchanged: ``flush`` blocks until everything submitted so far is committed,
and the windows call it from their Bytewax snapshot. Bytewax commits an epoch (partition
offsets + window state) only after every snapshot of that epoch was taken, so it never
commits an epoch whose writes are still in flight; after a crash, recovery replays from
an epoch whose writes all landed. While PostgreSQL is gone the writer waits (see
``MetricsWriter``), so ``flush`` and, once ``max_pending_rows`` are queued, ``submit``
block: the flow pauses, commits nothing new, and goes on by itself when PostgreSQL is
back. Only an unexpected error (a bug), or ``close`` during an outage, ends the writer;
it is raised in the dataflow at its next ``submit`` or ``flush``.
"""

from __future__ import annotations

import logging
import threading

from speed_layer.items import Emission
from speed_layer.sink import MetricsWriter
from speed_layer.split import emission_rows as _rows

log = logging.getLogger(__name__)


class WriterFailed(RuntimeError):
    """The writer thread ended without applying a write (a bug, or closed mid-outage)."""


class BackgroundWriter:
    """One thread, one connection; at most ``max_pending_rows`` rows queued or in flight."""

    def __init__(self, writer: MetricsWriter, *, max_pending_rows: int = 400_000) -> None:
        self._writer = writer
        self._max_pending_rows = max_pending_rows
        self._cond = threading.Condition()
        self._queue: list[tuple[Emission, int]] = []  # with its row count
        self._pending_rows = 0  # queued + being written
        self._submitted = 0
        self._committed = 0
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="turnstile-speed-writer",
                                        daemon=True)
        self._thread.start()

    def submit(self, emission: Emission) -> None:
        """Queue an emission; waits only while the writer is ``max_pending_rows`` behind."""
        rows = _rows(emission)
        with self._cond:
            self._check()
            while (self._pending_rows and self._pending_rows + rows > self._max_pending_rows
                   and self._error is None):
                self._cond.wait()
            self._check()
            self._queue.append((emission, rows))
            self._pending_rows += rows
            self._submitted += 1
            self._cond.notify_all()

    def flush(self) -> None:
        """Block until every emission submitted before this call is committed."""
        with self._cond:
            target = self._submitted
            while self._committed < target and self._error is None:
                self._cond.wait()
            self._check()

    def close(self) -> None:
        """Flush, stop the thread and close the connection."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join()
            self._writer.close()

    def _check(self) -> None:
        if self._error is not None:
            raise WriterFailed("writing to PostgreSQL failed") from self._error
        if self._closing:
            raise WriterFailed("the writer is closed")

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                queued, self._queue = self._queue, []
            batch = [emission for emission, _ in queued]
            rows = sum(n for _, n in queued)
            try:
                self._writer.write(batch)
            except BaseException as exc:  # handed to the dataflow thread, which raises it
                log.exception("speed layer writer thread stopped on %d emission(s)",
                              len(batch))
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._committed += len(batch)
                self._pending_rows -= rows
                self._cond.notify_all()
