"""The speed layer's Bytewax dataflow: ``build_flow(settings)``.

    kafka (one ShardBatch per poll) ─┬─ dead letters ─▶ dead-letter topic
                                     └─ key: partition ─▶ windows (ShardLogic)
                                                              │ submit / flush
                                                              ▼
                                              BackgroundWriter thread ─▶ PostgreSQL

State is keyed by Kafka partition (a shard), never by series: one ``ShardWindows`` per
partition holds every minute window of that partition. Every (project, api_key) lives on
one partition (the record key), so every metrics_1m row is owned by exactly one shard and
the writer may replace rows. The windows hand their emissions straight to the process's
writer thread (not to a downstream step: a step after them could still be writing an
epoch's emissions when their snapshot is taken) and flush it in their snapshot.
Recovery: Bytewax snapshots each shard's windows and each partition's next offset at the
same epoch, after that epoch's writes are committed; after a crash both are restored
together and the records after that offset are replayed, rebuilding the full values that
are then written over whatever the crashed run had written.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from schemas.consumer_ops import ComponentOps, no_ops
from schemas.dead_letter_publisher import DeadLetterPublisher
from schemas.dead_letters import DeadLetter
from speed_layer.background_writer import BackgroundWriter
from speed_layer.dead_letter import DeadLetterSink
from speed_layer.flow_errors import logged
from speed_layer.items import Emission, ShardBatch
from speed_layer.settings import SpeedSettings
from speed_layer.sink import MetricsWriter
from speed_layer.source import COMPONENT, EventsSource
from speed_layer.windows import ShardWindows


class SharedWriter:
    """The flow's one ``BackgroundWriter`` in this process, shared by its worker threads.

    Opened on first use; each worker holds a lease (its ``WriterLease`` sink partition)
    and the last lease to end closes it.
    """

    def __init__(self, settings: SpeedSettings, ops: ComponentOps,
                 dead_letters: DeadLetterPublisher) -> None:
        self.settings = settings
        self.ops = ops
        self.dead_letters = dead_letters
        self._lock = threading.Lock()
        self._writer: BackgroundWriter | None = None
        self._leases = 0

    def get(self) -> BackgroundWriter:
        with self._lock:
            if self._writer is None:
                self._writer = BackgroundWriter(MetricsWriter(
                    self.settings.database.dsn(), ops=self.ops,
                    dead_letters=self.dead_letters.publish,
                    topic=self.settings.kafka.events_topic, stop=self.dead_letters.stop))
            return self._writer

    def flush(self) -> None:
        """Wait for every write submitted so far (nothing to do if none was)."""
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.flush()

    def lease(self) -> None:
        with self._lock:
            self._leases += 1

    def release(self) -> None:
        with self._lock:
            self._leases -= 1
            writer = self._writer if self._leases == 0 else None
            if writer is not None:
                self._writer = None
        if writer is not None:
            writer.close()


class ShardLogic(StatefulLogic[ShardBatch, Emission, bytes]):
    """Bytewax glue around one shard's ``ShardWindows``; emits partials on a timer."""

    def __init__(self, windows: ShardWindows, partition: int, emit_interval: timedelta,
                 writer: SharedWriter) -> None:
        self.windows = windows
        self.partition = partition
        self.emit_interval = emit_interval
        self.writer = writer
        self.next_emit = datetime.now(UTC) + emit_interval

    def _context(self, batch: ShardBatch | None = None) -> str:
        where = f"partition {self.partition}, {self.windows.open_windows} open window(s)"
        if batch is not None and len(batch):
            where += f", offsets {int(batch.offsets[0])}..{int(batch.offsets[-1])}"
        return where

    def on_item(self, value: ShardBatch) -> tuple[Iterable[Emission], bool]:
        with logged("windows.on_item", lambda: self._context(value)):
            self.partition = value.partition
            late = self.windows.add(value)
            if late is not None:
                self.writer.get().submit(Emission(partition=value.partition, late=late))
        return (), StatefulLogic.RETAIN

    def _emit(self) -> None:
        rows = self.windows.emit()
        if rows is not None:
            self.writer.get().submit(Emission(partition=self.partition, metrics=rows))

    def on_notify(self) -> tuple[Iterable[Emission], bool]:
        with logged("windows.on_notify", self._context):
            self.next_emit = datetime.now(UTC) + self.emit_interval
            self._emit()
        return (), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Emission], bool]:
        with logged("windows.on_eof", self._context):
            self._emit()
            self.writer.flush()
        return (), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.next_emit

    def snapshot(self) -> bytes:
        with logged("windows.snapshot", self._context):
            # The epoch this snapshot belongs to is committed only after it is taken:
            # its writes must be in PostgreSQL by then (flush waits out an outage).
            self.writer.flush()
            # Bytes are immutable: the later mutations of the live state cannot reach them.
            return pickle.dumps(self.windows, protocol=pickle.HIGHEST_PROTOCOL)


class _WriterLease(StatelessSinkPartition[Emission]):
    """Keeps the process's writer open while this worker runs (no items flow here)."""

    def __init__(self, writer: SharedWriter) -> None:
        self.writer = writer
        writer.lease()

    def write_batch(self, items: list[Emission]) -> None:
        with logged("postgres.write_batch", lambda: f"{len(items)} emission(s)"):
            for emission in items:
                self.writer.get().submit(emission)

    def close(self) -> None:
        self.writer.release()


class WriterLeases(DynamicSink[Emission]):
    """The end of the windows' stream: one lease on the shared writer per worker."""

    def __init__(self, writer: SharedWriter) -> None:
        self.writer = writer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WriterLease:
        return _WriterLease(self.writer)


def shard_builder(settings: SpeedSettings,
                  writer: SharedWriter) -> Callable[[bytes | None], ShardLogic]:
    """Builds a shard's logic, new or from its snapshot in the recovery store."""
    interval = timedelta(seconds=settings.emit_interval_s)

    def build(resume: bytes | None) -> ShardLogic:
        if resume is not None:
            with logged("windows.resume", lambda: f"snapshot of {len(resume)} bytes"):
                windows = pickle.loads(resume)  # noqa: S301 - our own snapshot and store
        else:
            windows = ShardWindows(
                allowed_lateness_us=settings.allowed_lateness_us,
                compression=settings.digest_compression,
                attempt_window_ms=settings.dedupe_attempt_window_ms,
                dedupe_horizon_ms=settings.dedupe_horizon_ms,
            )
        return ShardLogic(windows, partition=-1, emit_interval=interval, writer=writer)

    return build


def _letters_of(batch: ShardBatch) -> tuple[DeadLetter, ...]:
    return batch.dead_letters


def _shard_of(batch: ShardBatch) -> str:
    return str(batch.partition)


def build_flow(
    settings: SpeedSettings,
    *,
    source: Source[ShardBatch] | None = None,
    dead_letters: DynamicSink[DeadLetter] | None = None,
    ops: ComponentOps | None = None,
    stop: threading.Event | None = None,
) -> Dataflow:
    """The dataflow; ``source`` may be swapped (tests run it over TestingSource).

    ``ops`` receives the flow's metrics and readiness (``runner.run`` serves them);
    setting ``stop`` ends any wait for PostgreSQL or Kafka (shutdown).
    """
    ops = ops or no_ops(COMPONENT)
    publisher = DeadLetterPublisher(
        bootstrap=settings.kafka.bootstrap, topic=settings.kafka.dead_letter_topic,
        dsn=settings.database.dsn(), ops=ops, stop=stop)
    writer = SharedWriter(settings, ops, publisher)
    flow = Dataflow("turnstile_speed")
    batches = op.input("kafka", flow, source or EventsSource(settings, ops))
    letters = op.flat_map("dead_letters", batches, _letters_of)
    op.output("dead_letter_topic", letters, dead_letters or DeadLetterSink(publisher))
    keyed = op.key_on("shard", batches, _shard_of)
    emissions = op.stateful("windows", keyed, shard_builder(settings, writer))
    op.output("postgres", op.key_rm("unkey", emissions), WriterLeases(writer))
    return flow

