"""Helpers shared by the gateway's integration tests: reading a topic, building events."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition


@dataclass
class Consumed:
    key: bytes
    value: dict[str, Any]
    headers: dict[str, bytes]


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0,
               settle: float = 1.0) -> list[Consumed]:
    """Read the topic from the start until ``expected`` records came and ``settle`` s passed
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
                out.append(Consumed(m.key(), orjson.loads(m.value()),
                                    {k: v for k, v in (m.headers() or [])}))
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
