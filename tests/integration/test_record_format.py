"""Format v2 against a real broker: librdkafka's murmur2 agrees, records round-trip, and
the reader example of RECORD_FORMAT.md works as printed."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer

from schemas.records import (
    decode_records,
    encode_event_records,
    partitions_for,
)
from tests.unit.schemas.test_record_format import make_batch, rows_as_records

DOC = Path(__file__).resolve().parents[2] / "schemas" / "RECORD_FORMAT.md"


def _producer(bootstrap: str, **extra: object) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                     "acks": "all", "compression.type": "lz4", "linger.ms": 5, **extra})


def _produce_all(producer: Producer, items: list[tuple[str, bytes, bytes, int]]) -> None:
    """(topic, key, value, partition or -1); fails the test on any delivery error."""
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for topic, key, value, partition in items:
        if partition >= 0:
            producer.produce(topic, value=value, key=key, partition=partition,
                             on_delivery=on_delivery)
        else:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []


def _consume(bootstrap: str, topic: str, count: int) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[Message] = []
    try:
        for _ in range(200):
            got.extend(m for m in consumer.consume(1000, 0.5) if m.error() is None)
            if len(got) >= count:
                break
    finally:
        consumer.close()
    assert len(got) == count
    return got


@pytest.mark.parametrize("partitions", [12, 7])
def test_librdkafka_murmur2_puts_every_key_where_we_compute(stack, fresh_topic,
                                                            partitions: int) -> None:
    topic = fresh_topic(partitions=partitions, prefix="v2.murmur2")
    keys = [f"proj_{p}:cust_{i}".encode() for p in range(3) for i in range(150)]
    keys += ["projé:клиент".encode(), b"p:", b"p:anonymous", b"x" * 300]
    producer = _producer(stack.kafka_bootstrap, partitioner="murmur2_random")
    _produce_all(producer, [(topic, k, b"v", -1) for k in keys])
    stored = {m.key(): m.partition() for m in _consume(stack.kafka_bootstrap, topic, len(keys))}
    expected = dict(zip(keys, partitions_for(keys, partitions).tolist(), strict=True))
    assert stored == expected
    assert len(set(expected.values())) == partitions  # the keys cover every partition


def test_v2_records_round_trip_through_the_broker_on_their_partitions(stack, fresh_topic):
    topic = fresh_topic(partitions=12, prefix="v2.roundtrip")
    batches = [make_batch(700, seed=s, keys=300, batch_id=f"b{s}") for s in range(4)]
    records = [r for s, b in enumerate(batches)
               for r in encode_event_records(b, batch_id=f"b{s}", partitioner=12)]
    _produce_all(_producer(stack.kafka_bootstrap),
                 [(topic, r.key, r.value, r.partition) for r in records])
    # The same records keyed only (librdkafka's murmur2 picks): they land where we said.
    keyed = fresh_topic(partitions=12, prefix="v2.keyed")
    _produce_all(_producer(stack.kafka_bootstrap, partitioner="murmur2_random"),
                 [(keyed, r.key, r.value, -1) for r in records])

    got = _consume(stack.kafka_bootstrap, topic, len(records))
    by_value = {r.value: r for r in records}
    assert all(by_value[m.value()].partition == m.partition() for m in got)
    assert sorted((m.key(), m.partition()) for m in _consume(
        stack.kafka_bootstrap, keyed, len(records))) == sorted(
        (r.key, r.partition) for r in records)

    decoded = decode_records([m.value() for m in got])
    assert decoded.poison == []
    rows = rows_as_records(decoded.table)
    assert sorted(rows, key=lambda r: (r.batch_id, r.batch_index)) == [
        r for b in batches for r in b]
    # Per partition, in offset order, each key's events keep their batch order.
    for partition in range(12):
        values = [m.value() for m in sorted(got, key=lambda m: m.offset())
                  if m.partition() == partition]
        seen: dict[str, list[tuple[str, int]]] = {}
        for r in rows_as_records(decode_records(values).table):
            seen.setdefault(r.api_key, []).append((r.batch_id, r.batch_index))
        assert all(v == sorted(v) for v in seen.values())


def _reader_example() -> str:
    text = DOC.read_text()
    found = re.search(r"<!-- reader-example -->\n```python\n(.*?)```", text, re.S)
    assert found, "RECORD_FORMAT.md lost its reader example"
    return found.group(1)


def test_the_documented_reader_example_reads_the_topic(stack, fresh_topic, monkeypatch):
    code = _reader_example()
    assert len(code.strip().splitlines()) <= 15
    topic = fresh_topic(partitions=3, prefix="v2.reader")
    batch = make_batch(500, keys=40)
    records = encode_event_records(batch, batch_id="doc", partitioner=3)
    _produce_all(_producer(stack.kafka_bootstrap),
                 [(topic, r.key, r.value, r.partition) for r in records])
    monkeypatch.setenv("KAFKA_BOOTSTRAP", stack.kafka_bootstrap)
    monkeypatch.setenv("TOPIC", topic)
    namespace: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    events = namespace["events"]
    assert events.num_rows == 500
    assert sorted(events.column("batch_index").to_pylist()) == list(range(500))
    assert events.schema.metadata == {b"turnstile.format": b"2"}
