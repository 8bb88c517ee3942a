"""Reading what the speed layer wrote, in the shape of the unit tests' reference."""

from __future__ import annotations

import psycopg

from tests.unit.speed_layer.fixtures import assert_rows_equal, reference  # noqa: F401

_COLUMNS = ("request_count", "error_count", "server_error_count", "latency_sum", "latency_min",
            "latency_max", "bytes_in", "bytes_out")


def metrics(db: psycopg.Connection, prefix: str, table: str = "metrics_1m") -> dict:
    rows = db.execute(
        f"SELECT (extract(epoch FROM bucket) * 1000000)::bigint, project_id, api_key, endpoint,"  # noqa: S608
        f" method, status_class, {', '.join(_COLUMNS)} FROM {table} WHERE project_id LIKE %s",
        (prefix + "%",),
    ).fetchall()
    return {tuple(r[:6]): dict(zip(_COLUMNS, r[6:], strict=True)) for r in rows}


def total(db: psycopg.Connection, prefix: str, table: str = "metrics_1m") -> int:
    row = db.execute(
        f"SELECT coalesce(sum(request_count), 0) FROM {table} WHERE project_id LIKE %s",  # noqa: S608
        (prefix + "%",),
    ).fetchone()
    assert row is not None
    return int(row[0])


def dlq_messages(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    """The first ``expected`` messages of a dead-letter topic (fewer if they never come)."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "dlq-reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            got.extend(m for m in consumer.consume(10, 0.5) if m.error() is None)
    finally:
        consumer.close()
    return got


def dead_letter_rows(db: psycopg.Connection, component: str, prefix: str) -> list[tuple]:
    return db.execute(
        "SELECT project_id, reason, kafka_partition, kafka_offset, event_id FROM dead_letters"
        " WHERE component = %s AND project_id LIKE %s ORDER BY kafka_offset, event_id",
        (component, prefix + "%")).fetchall()
