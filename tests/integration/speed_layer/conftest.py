"""Fixtures of the speed layer's integration tests: settings per test, a producer helper."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from confluent_kafka import Producer

from schemas.event import EventRecord
from schemas.settings import DatabaseSettings, KafkaSettings, StateSettings
from speed_layer.settings import SpeedSettings
from tests.records import gateway_records


def produce(bootstrap: str, topic: str, records: Sequence[EventRecord], *,
            batch_id: str | None = None, timestamp_ms: int | None = None,
            raw: Sequence[tuple[bytes, bytes]] = (), batch_size: int = 1_000) -> None:
    """Publish like the gateway does: HTTP batches of ``batch_size`` events, each as v2
    records, one per partition it touches, to that partition; with ``batch_id`` all the
    records are one batch of that id. ``raw`` values follow as they are."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "lz4"})
    partitions = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
    extra: dict[str, object] = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
    errors: list[object] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    extra["on_delivery"] = on_delivery
    size = len(records) if batch_id else batch_size
    for start in range(0, len(records), max(size, 1)):
        for rec in gateway_records(records[start:start + size], partitions=partitions,
                                   batch_id=batch_id):
            while True:
                try:
                    producer.produce(topic, value=rec.value, key=rec.key,
                                     partition=rec.partition, **extra)
                    break
                except BufferError:
                    producer.poll(0.1)
    for key, value in raw:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0
    assert not errors, errors[:3]


@pytest.fixture
def speed_settings(stack, fresh_topic, tmp_path: Path) -> Callable[..., SpeedSettings]:
    """Factory: settings on a fresh events topic and dead-letter topic, state in tmp_path."""

    def make(partitions: int = 3, **overrides: object) -> SpeedSettings:
        values: dict[str, object] = {
            "kafka": KafkaSettings(
                bootstrap=stack.kafka_bootstrap,
                events_topic=fresh_topic(partitions, prefix="speed"),
                dead_letter_topic=fresh_topic(1, prefix="speed-dlq"),
                events_partitions=partitions,
            ),
            "database": DatabaseSettings(url=stack.database_url),
            "state": StateSettings(state_dir=tmp_path / "state"),
            "stop_at_end": True,
            "emit_interval_s": 0.5,
            "snapshot_interval_s": 1.0,
            "recovery": False,
        }
        values.update(overrides)
        return SpeedSettings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def project_prefix() -> str:
    """Projects unique to the test, so tests sharing the session database never collide."""
    return f"t{uuid.uuid4().hex[:8]}-"
