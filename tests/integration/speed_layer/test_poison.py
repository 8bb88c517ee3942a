"""Records PostgreSQL cannot store, written straight to Kafka (past the gateway's check)."""

import msgspec
import numpy as np
import pyarrow as pa
from bytewax.testing import run_main

from schemas.codec import record_key
from schemas.dead_letter_publisher import DeadLetterPublisher
from schemas.dead_letters import COMPONENT_HEADER, ORIGIN_HEADER, PROJECT_HEADER, REASON_HEADER
from schemas.records import read_record
from speed_layer.dataflow import build_flow
from speed_layer.items import Emission
from speed_layer.runner import ensure_dead_letter_topic
from speed_layer.sink import MetricsWriter
from speed_layer.windows import ShardWindows
from tests.integration.speed_layer.conftest import produce
from tests.integration.speed_layer.helpers import (
    assert_rows_equal,
    dead_letter_rows,
    dlq_messages,
    metrics,
    reference,
    total,
)
from tests.records import gateway_records
from tests.unit.speed_layer.fixtures import make_batch, make_records


def poison_pair(template, project: str, good) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """A record whose last event has U+0000 in its path and endpoint (after ``good``
    events), and one that is not an Arrow stream (a truncated record)."""
    nul = msgspec.structs.replace(template, event_id="nul", project_id=project,
                                  path="/orders/\x00", endpoint="/orders/\x00")
    key = record_key(project, template.api_key)
    (mixed,) = gateway_records([*good, nul], partitions=1)
    (whole,) = gateway_records([template], partitions=1)
    return (key, mixed.value), (key, whole.value[:-40])


def test_a_nul_event_and_a_broken_record_are_dead_lettered_and_the_rest_counts_exactly(
        stack, db, speed_settings, project_prefix):
    settings = speed_settings(partitions=1)
    records = make_records(610, minutes=2, projects=2, keys=3, seed=41,
                           project_prefix=project_prefix)
    nul, broken = poison_pair(records[0], f"{project_prefix}0", records[600:])
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records[:300], raw=[nul])
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records[300:600],
            raw=[broken])
    ensure_dead_letter_topic(settings)
    run_main(build_flow(settings))
    assert total(db, project_prefix) == 610  # the nul event's 10 neighbours count
    assert_rows_equal(metrics(db, project_prefix), reference(records))
    got = dlq_messages(stack.kafka_bootstrap, settings.kafka.dead_letter_topic, 2)
    alone = read_record(got[0].value())
    assert alone.column("event_id").to_pylist() == ["nul"]
    assert got[1].value() == broken[1]
    headers = [dict(m.headers()) for m in got]
    assert b"U+0000" in headers[0][REASON_HEADER]
    assert headers[1][REASON_HEADER].startswith(b"not an Arrow IPC stream")
    topic = settings.kafka.events_topic
    assert [h[ORIGIN_HEADER] for h in headers] == [f"{topic}/0/1".encode(),
                                                   f"{topic}/0/3".encode()]
    assert all(h[COMPONENT_HEADER] == b"speed_layer" for h in headers)
    assert all(h[PROJECT_HEADER] == f"{project_prefix}0".encode() for h in headers)
    rows = dead_letter_rows(db, "speed_layer", project_prefix)
    assert [(p, part, off) for p, _, part, off, _ in rows] == [
        (f"{project_prefix}0", 0, 1), (f"{project_prefix}0", 0, 3)]
    assert rows[0][1].startswith("endpoint: contains U+0000")
    # Running again from the start (a replay) adds no second row and still counts exactly.
    run_main(build_flow(settings))
    assert len(dead_letter_rows(db, "speed_layer", project_prefix)) == 2
    assert total(db, project_prefix) == 610


def test_a_window_postgres_refuses_is_split_out_and_the_others_are_written(
        stack, db, speed_settings, project_prefix):
    settings = speed_settings(partitions=1)
    ensure_dead_letter_topic(settings)
    records = make_records(800, minutes=3, projects=2, keys=3, seed=42,
                           project_prefix=project_prefix)
    windows = ShardWindows(allowed_lateness_us=300_000_000, compression=200)
    windows.add(make_batch(records[:500], partition=0))
    first = windows.emit()
    windows.add(make_batch(records[500:], partition=0))
    second = windows.emit()
    assert first is not None and second is not None and len(second) > 8
    # Make one window of the second emission unstorable, as a bug upstream could.
    bad = int(np.flatnonzero(second.column("request_count").to_numpy() > 1)[0])
    row = second.slice(bad, 1).to_pylist()[0]
    bad_window = (row["bucket_us"], row["project_id"], row["api_key"], row["endpoint"],
                  row["method"], row["status_class"])
    endpoints = second.column("endpoint").to_pylist()
    endpoints[bad] = "/orders/\x00"
    second = second.set_column(second.schema.get_field_index("endpoint"),
                               second.schema.field("endpoint"), pa.array(endpoints))
    publisher = DeadLetterPublisher(bootstrap=stack.kafka_bootstrap,
                                    topic=settings.kafka.dead_letter_topic,
                                    dsn=stack.database_url)
    writer = MetricsWriter(stack.database_url, dead_letters=publisher.publish,
                           topic=settings.kafka.events_topic)
    try:
        stats = writer.write([Emission(0, metrics=first), Emission(0, metrics=second)])
    finally:
        writer.close()
        publisher.close()
    assert stats.metric_rows == len(first) + len(second) - 1
    # Every other window holds its newest (full) value; the refused one at most what the
    # first emission wrote for it.
    got, want = metrics(db, project_prefix), reference(records)
    others = {k: v for k, v in want.items() if k != bad_window}
    assert set(got) - {bad_window} == set(others)
    assert_rows_equal({k: got[k] for k in others}, others)
    assert got.get(bad_window, {}).get("request_count", 0) < want[bad_window]["request_count"]
    rows = dead_letter_rows(db, "speed_layer", project_prefix)
    assert len(rows) == 1
    project, reason, partition, offset, series = rows[0]
    assert (project, partition, offset) == (row["project_id"], 0, None)
    assert reason.startswith("metrics_1m PostgreSQL refused the row")
    assert series.startswith("window ") and "/orders/\\x00" in series
    (message,) = dlq_messages(stack.kafka_bootstrap, settings.kafka.dead_letter_topic, 1)
    assert msgspec.json.decode(message.value())["endpoint"] == "/orders/\x00"
