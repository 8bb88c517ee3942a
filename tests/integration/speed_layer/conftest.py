"""Fixtures of the speed layer's integration tests: settings per test, a producer helper."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer

from schemas.codec import encode_records, record_key
from schemas.event import EventRecord
from schemas.settings import DatabaseSettings, KafkaSettings, StateSettings
from schemas.topics import BATCH_ID_HEADER
from speed_layer.settings import SpeedSettings


def produce(bootstrap: str, topic: str, records: Sequence[EventRecord], *,
            batch_id: str | None = None, timestamp_ms: int | None = None,
            raw: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Publish like the gateway does: key project:api_key, batch id in the body and header."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "zstd"})
    headers = [(BATCH_ID_HEADER, batch_id.encode())] if batch_id else None
    extra: dict[str, object] = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
    errors: list[object] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    extra["on_delivery"] = on_delivery
    if batch_id:
        records = [msgspec.structs.replace(r, batch_id=batch_id, batch_index=i)
                   for i, r in enumerate(records)]
    for record, value in zip(records, encode_records(records), strict=True):
        while True:
            try:
                producer.produce(topic, value=value, key=record_key(record.project_id,
                                                                     record.api_key),
                                 headers=headers, **extra)
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
