"""The local broker: topic layout, an exact idempotent round trip, and a restart."""

from __future__ import annotations

import hashlib
import time

import pytest
from confluent_kafka import Consumer, Producer

from schemas.event import EventRecord
from schemas.records import encode_event_records, read_record
from turnstile_cli.stack import StackError, ensure_topic, ensure_topics, partition_count

EVENTS = 100_000
T0_US = 1_767_225_600_000_000


def test_events_topic_has_configured_partitions(stack):
    settings = stack.kafka_settings
    assert partition_count(stack.kafka_bootstrap, settings.events_topic) == 12
    assert partition_count(stack.kafka_bootstrap, settings.dead_letter_topic) == 1


def test_ensure_topics_is_idempotent(stack):
    first = ensure_topics(stack.kafka_settings, stack.kafka_bootstrap)
    assert ensure_topics(stack.kafka_settings, stack.kafka_bootstrap) == first


def test_existing_topic_with_other_partition_count_is_refused(stack, fresh_topic):
    topic = fresh_topic(partitions=3)
    with pytest.raises(StackError, match="has 3 partitions"):
        ensure_topic(stack.kafka_bootstrap, topic, 12)


def _produce(bootstrap: str, topic: str, count: int, partitions: int) -> str:
    """Produce ``count`` events as the gateway does (v2 records, HTTP batches of 1,000, one
    record per partition a batch touches, idempotent producer); returns the records' digest."""
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.size": 1_000_000,
    })
    errors: list[object] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    digest = 0
    for start in range(0, count, 1_000):
        events = [EventRecord(event_id=f"e{i}", project_id="p1", timestamp_us=T0_US + i,
                              received_at_us=T0_US + i, method="GET", path="/x",
                              endpoint="/x", status_code=200, latency_ms=float(i % 997),
                              api_key=f"k{i % 50}")
                  for i in range(start, min(start + 1_000, count))]
        for rec in encode_event_records(events, batch_id=f"b{start}", partitioner=partitions):
            digest ^= _value_hash(rec.value)
            while True:
                try:
                    producer.produce(topic, value=rec.value, key=rec.key,
                                     partition=rec.partition, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []
    return f"{digest:016x}"


def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> tuple[int, str]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"check-{topic}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    seen, digest = 0, 0
    deadline = time.monotonic() + timeout
    try:
        while seen < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=1.0):
                assert msg.error() is None, msg.error()
                digest ^= _value_hash(msg.value())
                seen += _events_in(msg.value())
        # Anything beyond `expected` would be a duplicate: give it a moment to show up.
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            seen += _events_in(msg.value())
            digest ^= _value_hash(msg.value())
    finally:
        consumer.close()
    return seen, f"{digest:016x}"


def _events_in(value: bytes) -> int:
    return int(read_record(value, ["batch_index"]).num_rows)


def _value_hash(value: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), "big")


@pytest.mark.slow
def test_idempotent_producer_round_trips_100k_events_exactly(stack, fresh_topic):
    topic = fresh_topic(partitions=12)
    sent = _produce(stack.kafka_bootstrap, topic, EVENTS, 12)
    count, received = _consume(stack.kafka_bootstrap, topic, EVENTS)
    assert count == EVENTS
    assert received == sent


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_broker_restart_keeps_acknowledged_records(stack, fresh_topic, how):
    if stack.kafka is None:
        pytest.skip("external Kafka: the test session does not own the broker")
    topic = fresh_topic(partitions=2)
    sent = _produce(stack.kafka_bootstrap, topic, 1_000, 2)
    old_pid = stack.kafka.pid
    getattr(stack.kafka, how)()  # SIGTERM (controlled shutdown) or SIGKILL (a crash)
    assert stack.kafka.pid is None
    stack.kafka.start()
    assert stack.kafka.pid not in (None, old_pid)
    assert _consume(stack.kafka_bootstrap, topic, 1_000) == (1_000, sent)
