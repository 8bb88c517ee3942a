"""Helpers shared by the gateway's integration tests: reading a topic, building events."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition

from schemas.records import read_record


@dataclass
class Consumed:
    """One event of a v2 record: the record's key, partition and offset, the event's fields
    (times as ``timestamp_us``/``received_at_us`` integers)."""

    key: bytes
    value: dict[str, Any]
    partition: int
    offset: int


def _events(value: bytes) -> list[dict[str, Any]]:
    table = read_record(value)
    rows = table.to_pylist()
    ts = table.column("timestamp").cast(pa.int64()).to_pylist()
    rec = table.column("received_at").cast(pa.int64()).to_pylist()
    for row, t, r in zip(rows, ts, rec, strict=True):
        del row["timestamp"], row["received_at"]
        row["timestamp_us"], row["received_at_us"] = t, r
    return rows


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0,
               settle: float = 1.0) -> list[Consumed]:
    """Read the topic from the start until ``expected`` events came and ``settle`` s passed
    without more (so extra, duplicate records would be seen too)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"test-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    meta = consumer.list_topics(topic, timeout=10)
    parts = [TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions]
    consumer.assign(parts)
    out: list[Consumed] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(10_000, timeout=0.2)
            if msgs:
                quiet_since = time.monotonic()
            for m in msgs:
                assert m.error() is None, m.error()
                out.extend(Consumed(m.key(), row, m.partition(), m.offset())
                           for row in _events(m.value()))
            if len(out) >= expected and time.monotonic() - quiet_since >= settle:
                break
    finally:
        consumer.close()
    return out


def event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": f"ev-{uuid.uuid4().hex[:12]}-{i}",
        "timestamp": time.time() - 1,
        "method": "GET",
        "path": f"/users/{i}",
        "status_code": 200,
        "latency_ms": 3.5,
        "api_key": "cust-1",
    }
    ev.update(overrides)
    return {k: v for k, v in ev.items() if v is not ...}
