"""The speed layer's Bytewax dataflow: ``build_flow(settings)``.

    kafka (one ShardBatch per poll) ─┬─ dead letters ─▶ dead-letter topic
                                     └─ key: partition ─▶ windows (ShardLogic)
                                                              │ Emission (Arrow batches)
                                                              ▼
                                               postgres (PostgresSink, one part per
                                               shard) ─▶ BackgroundWriter ─▶ PostgreSQL

State is keyed by Kafka partition (a shard), never by series: one ``ShardWindows`` per
partition holds every minute window of that partition. Every (project, api_key) lives on
one partition (the record key), so every metrics_1m row is owned by exactly one shard and
the writer may replace rows. The windows return their emissions downstream, keyed by
shard, to the ``postgres`` step, whose parts hand them to the process's writer thread
(the write overlaps the dataflow). That step is stateful: its snapshot, taken by Bytewax
once all of an epoch's emissions have reached it, waits until they are committed.
Recovery: Bytewax commits an epoch only after every snapshot of it was saved (each
partition's next offset, each shard's windows, each sink part's flush), so after a crash
the state and offsets of the last committed epoch are restored together and the records
after that offset are replayed, rebuilding the full values that are then written over
whatever the crashed run had written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition

from schemas.consumer_ops import ComponentOps, no_ops
from schemas.dead_letter_publisher import DeadLetterPublisher
from schemas.dead_letters import DeadLetter
from speed_layer.background_writer import BackgroundWriter
from speed_layer.dead_letter import DeadLetterSink
from speed_layer.flow_errors import logged
from speed_layer.items import Emission, ShardBatch
from speed_layer.settings import SpeedSettings
from speed_layer.sink import MetricsWriter
from speed_layer.snapshot import dump_windows, load_windows
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

    def __init__(self, windows: ShardWindows, partition: int,
                 emit_interval: timedelta) -> None:
        self.windows = windows
        self.partition = partition
        self.emit_interval = emit_interval
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
        if late is None:
            return (), StatefulLogic.RETAIN
        return (Emission(partition=value.partition, late=late),), StatefulLogic.RETAIN

    def _emit(self) -> tuple[Emission, ...]:
        rows = self.windows.emit()
        return () if rows is None else (Emission(partition=self.partition, metrics=rows),)

    def on_notify(self) -> tuple[Iterable[Emission], bool]:
        with logged("windows.on_notify", self._context):
            self.next_emit = datetime.now(UTC) + self.emit_interval
            return self._emit(), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Emission], bool]:
        with logged("windows.on_eof", self._context):
            return self._emit(), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.next_emit

    def snapshot(self) -> bytes:
        with logged("windows.snapshot", self._context):
            return dump_windows(self.windows)


class _PostgresPart(StatefulSinkPartition[Emission, None]):
    """One shard's part of the ``postgres`` step: hands emissions to the writer thread."""

    def __init__(self, writer: SharedWriter, part: str) -> None:
        self.writer = writer
        self.part = part
        writer.lease()

    def write_batch(self, values: list[Emission]) -> None:
        with logged("postgres.write_batch", lambda: f"part {self.part}, "
                                                    f"{len(values)} emission(s)"):
            writer = self.writer.get()
            for emission in values:  # one step per emission (thousands of rows each)
                writer.submit(emission)

    def snapshot(self) -> None:
        # Bytewax commits the epoch only after this returns: its writes must be in
        # PostgreSQL by then (flush waits out an outage).
        with logged("postgres.snapshot", lambda: f"part {self.part}"):
            self.writer.flush()

    def close(self) -> None:
        self.writer.release()


class PostgresSink(FixedPartitionedSink[Emission, None]):
    """The end of the windows' stream: one part per shard, all sharing one writer."""

    def __init__(self, writer: SharedWriter, parts: Callable[[], list[str]]) -> None:
        self.writer = writer
        self.parts = parts

    def list_parts(self) -> list[str]:
        return self.parts()

    def part_fn(self, item_key: str) -> int:
        return int(item_key) if item_key.isdigit() else super().part_fn(item_key)

    def build_part(self, step_id: str, for_part: str,
                   resume_state: None) -> _PostgresPart:
        return _PostgresPart(self.writer, for_part)


def shard_builder(settings: SpeedSettings) -> Callable[[bytes | None], ShardLogic]:
    """Builds a shard's logic, new or from its snapshot, with today's settings."""
    interval = timedelta(seconds=settings.emit_interval_s)

    def build(resume: bytes | None) -> ShardLogic:
        if resume is not None:
            with logged("windows.resume", lambda: f"snapshot of {len(resume)} bytes"):
                windows = load_windows(
                    resume, allowed_lateness_us=settings.allowed_lateness_us,
                    compression=settings.digest_compression,
                    dedupe_horizon_ms=settings.dedupe_horizon_ms)
        else:
            windows = ShardWindows(
                allowed_lateness_us=settings.allowed_lateness_us,
                compression=settings.digest_compression,
                dedupe_horizon_ms=settings.dedupe_horizon_ms,
            )
        return ShardLogic(windows, partition=-1, emit_interval=interval)

    return build


def _letters_of(batch: ShardBatch) -> tuple[DeadLetter, ...]:
    return batch.dead_letters


def _shard_of(batch: ShardBatch) -> str:
    return str(batch.partition)


def _test_parts() -> list[str]:
    """Sink parts when the source is swapped (tests): enough for their partitions."""
    return [str(p) for p in range(16)]


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
    events = source or EventsSource(settings, ops)
    batches = op.input("kafka", flow, events)
    letters = op.flat_map("dead_letters", batches, _letters_of)
    op.output("dead_letter_topic", letters, dead_letters or DeadLetterSink(publisher))
    keyed = op.key_on("shard", batches, _shard_of)
    emissions = op.stateful("windows", keyed, shard_builder(settings))
    parts = events.list_parts if isinstance(events, EventsSource) else _test_parts
    op.output("postgres", emissions, PostgresSink(writer, parts))
    return flow

