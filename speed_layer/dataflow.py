"""The speed layer's Bytewax dataflow: ``build_flow(settings)``.

    kafka (one ShardBatch per poll) ─┬─ dead letters ─▶ dead-letter topic
                                     └─ key: partition ─▶ windows (ShardLogic) ─▶ PostgreSQL

State is keyed by Kafka partition (a shard), never by series: one ``ShardWindows`` per
partition holds every minute window of that partition. Every (project, api_key) lives on
one partition (the record key), so every metrics_1m row is owned by exactly one shard and
the sink may replace rows. Recovery: Bytewax snapshots each shard's windows and each
partition's next offset at the same epoch; after a crash both are restored together and
the records after that offset are replayed, rebuilding the full values that the sink then
writes over whatever the crashed run had written.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from speed_layer.dead_letter import DeadLetterSink
from speed_layer.items import DeadLetter, Emission, ShardBatch
from speed_layer.settings import SpeedSettings
from speed_layer.sink import MetricsWriter
from speed_layer.source import EventsSource
from speed_layer.windows import ShardWindows


class ShardLogic(StatefulLogic[ShardBatch, Emission, bytes]):
    """Bytewax glue around one shard's ``ShardWindows``; emits partials on a timer."""

    def __init__(self, windows: ShardWindows, partition: int, emit_interval: timedelta) -> None:
        self.windows = windows
        self.partition = partition
        self.emit_interval = emit_interval
        self.next_emit = datetime.now(UTC) + emit_interval

    def on_item(self, value: ShardBatch) -> tuple[Iterable[Emission], bool]:
        self.partition = value.partition
        late = self.windows.add(value)
        if late is None:
            return [], StatefulLogic.RETAIN
        return [Emission(partition=value.partition, late=late)], StatefulLogic.RETAIN

    def _emit(self) -> list[Emission]:
        rows = self.windows.emit()
        return [] if rows is None else [Emission(partition=self.partition, metrics=rows)]

    def on_notify(self) -> tuple[Iterable[Emission], bool]:
        self.next_emit = datetime.now(UTC) + self.emit_interval
        return self._emit(), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Emission], bool]:
        return self._emit(), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.next_emit

    def snapshot(self) -> bytes:
        # Bytes are immutable: the later mutations of the live state cannot reach them.
        return pickle.dumps(self.windows, protocol=pickle.HIGHEST_PROTOCOL)


class _PostgresPartition(StatelessSinkPartition[Emission]):
    def __init__(self, settings: SpeedSettings) -> None:
        self.writer = MetricsWriter(settings.database.dsn())

    def write_batch(self, items: list[Emission]) -> None:
        self.writer.write(items)

    def close(self) -> None:
        self.writer.close()


class PostgresSink(DynamicSink[Emission]):
    """One connection per worker; each output batch is one transaction."""

    def __init__(self, settings: SpeedSettings) -> None:
        self.settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresPartition:
        return _PostgresPartition(self.settings)


def shard_builder(settings: SpeedSettings) -> Callable[[bytes | None], ShardLogic]:
    """Builds a shard's logic, new or from its snapshot in the recovery store."""
    interval = timedelta(seconds=settings.emit_interval_s)

    def build(resume: bytes | None) -> ShardLogic:
        if resume is not None:
            windows = pickle.loads(resume)  # noqa: S301 - our own snapshot, our own store
        else:
            windows = ShardWindows(
                allowed_lateness_us=settings.allowed_lateness_us,
                compression=settings.digest_compression,
                attempt_window_ms=settings.dedupe_attempt_window_ms,
            )
        return ShardLogic(windows, partition=-1, emit_interval=interval)

    return build


def build_flow(
    settings: SpeedSettings,
    *,
    source: Source[ShardBatch] | None = None,
    sink: DynamicSink[Emission] | None = None,
    dead_letters: DynamicSink[DeadLetter] | None = None,
) -> Dataflow:
    """The dataflow; ``source``/``sink`` may be swapped (tests run it over TestingSource)."""
    flow = Dataflow("turnstile_speed")
    batches = op.input("kafka", flow, source or EventsSource(settings))
    letters = op.flat_map("dead_letters", batches, lambda b: b.dead_letters)
    op.output("dead_letter_topic", letters, dead_letters or DeadLetterSink(settings))
    keyed = op.key_on("shard", batches, lambda b: str(b.partition))
    emissions = op.stateful("windows", keyed, shard_builder(settings))
    op.output("postgres", op.key_rm("unkey", emissions), sink or PostgresSink(settings))
    return flow

