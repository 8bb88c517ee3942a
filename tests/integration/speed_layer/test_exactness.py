import time

import numpy as np
from bytewax.testing import run_main
from confluent_kafka import Consumer, TopicPartition

from schemas.dead_letters import REASON_HEADER
from schemas.event import EventRecord
from speed_layer.dataflow import build_flow
from speed_layer.items import WINDOW_US
from speed_layer.runner import ensure_dead_letter_topic
from tests.integration.speed_layer.conftest import produce
from tests.integration.speed_layer.helpers import assert_rows_equal, metrics, reference, total
from tests.unit.speed_layer.fixtures import T0_US, make_records


def run_flow(settings) -> None:
    ensure_dead_letter_topic(settings)
    run_main(build_flow(settings))


def test_every_row_matches_an_independent_count(stack, db, speed_settings, project_prefix):
    settings = speed_settings(partitions=3)
    records = make_records(20_000, minutes=6, projects=3, keys=5, seed=11,
                           project_prefix=project_prefix)
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records)
    run_flow(settings)
    want = reference(records)
    got = metrics(db, project_prefix)
    assert len(got) == len(want) > 500
    assert_rows_equal(got, want)
    # Running again from the start (no recovery store) rewrites the same rows: never adds.
    run_flow(settings)
    assert_rows_equal(metrics(db, project_prefix), want)


def test_percentiles_within_one_percent_for_100k_lognormal(stack, db, speed_settings,
                                                          project_prefix):
    settings = speed_settings(partitions=1, poll_max_records=7_000)
    rng = np.random.default_rng(7)
    latencies = rng.lognormal(4.0, 0.8, 100_000)
    ts = T0_US + rng.integers(0, 3 * WINDOW_US, len(latencies))
    records = [
        EventRecord(event_id=f"q{i}", project_id=f"{project_prefix}q", timestamp_us=int(t),
                    received_at_us=int(t), method="GET", path="/a", endpoint="/a",
                    status_code=200, latency_ms=float(v), api_key="k")
        for i, (t, v) in enumerate(zip(ts, latencies, strict=True))
    ]
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records)
    run_flow(settings)
    row = db.execute(
        "SELECT tdigest_percentile(latency_digest, ARRAY[0.5, 0.95, 0.99]), sum(request_count)"
        " FROM metrics_1m WHERE project_id = %s", (f"{project_prefix}q",),
    ).fetchone()
    assert row[1] == 100_000
    exact = np.quantile(latencies, [0.5, 0.95, 0.99])
    errors = np.abs(np.asarray(row[0]) / exact - 1)
    assert (errors < 0.01).all(), errors


def test_late_events_inside_lateness_update_beyond_it_are_recorded(stack, db, speed_settings,
                                                                    project_prefix):
    settings = speed_settings(partitions=2, allowed_lateness_s=300)
    base = make_records(2_000, minutes=10, projects=1, keys=2, seed=3,
                        project_prefix=project_prefix)
    base = sorted(base, key=lambda r: r.timestamp_us)
    newest = base[-1].timestamp_us
    inside = [r for r in make_records(300, minutes=1, projects=1, keys=2, seed=4,
                                      project_prefix=project_prefix,
                                      start_us=T0_US + 7 * WINDOW_US)]
    beyond = make_records(40, minutes=1, projects=1, keys=2, seed=5,
                          project_prefix=project_prefix, start_us=T0_US + WINDOW_US)
    assert newest >= T0_US + 9 * WINDOW_US
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, base)
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, inside)
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, beyond)
    run_flow(settings)
    assert_rows_equal(metrics(db, project_prefix), reference(base + inside))

    def late_counts() -> dict:
        return dict(((r[0], r[1]), r[2]) for r in db.execute(
            "SELECT api_key, (extract(epoch FROM bucket) * 1000000)::bigint, event_count"
            " FROM late_events WHERE project_id LIKE %s", (project_prefix + "%",)))

    want = {}
    for r in beyond:
        key = (r.api_key, r.timestamp_us - r.timestamp_us % WINDOW_US)
        want[key] = want.get(key, 0) + 1
    assert late_counts() == want
    run_flow(settings)  # a replay from the start must not count late events twice
    assert late_counts() == want


def test_same_batch_id_published_twice_counts_once(stack, db, speed_settings, project_prefix):
    settings = speed_settings(partitions=2)
    records = make_records(500, minutes=2, projects=1, keys=4, seed=8,
                           project_prefix=project_prefix)
    other = make_records(200, minutes=2, projects=1, keys=4, seed=9,
                         project_prefix=project_prefix)
    now_ms = int(time.time() * 1000) - 60_000
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records, batch_id="b-1",
            timestamp_ms=now_ms)
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, other, batch_id="b-2",
            timestamp_ms=now_ms + 100)
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records, batch_id="b-1",
            timestamp_ms=now_ms + 30_000)  # the retry, 30 s later
    run_flow(settings)
    assert total(db, project_prefix) == 700
    assert_rows_equal(metrics(db, project_prefix), reference(records + other))


def test_poison_records_go_to_the_dead_letter_topic(stack, db, speed_settings, project_prefix):
    settings = speed_settings(partitions=1)
    records = make_records(100, minutes=1, projects=1, seed=2, project_prefix=project_prefix)
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records,
            raw=[(b"x:y", b"{broken"), (b"x:y", b'{"v": 1, "project_id": "x"}')])
    run_flow(settings)
    assert total(db, project_prefix) == 100
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "dlq-test"})
    consumer.assign([TopicPartition(settings.kafka.dead_letter_topic, 0, 0)])
    got = []
    for _ in range(50):
        got.extend(m for m in consumer.consume(10, 0.5) if m.error() is None)
        if len(got) >= 2:
            break
    consumer.close()
    assert [m.value() for m in got] == [b"{broken", b'{"v": 1, "project_id": "x"}']
    assert all(dict(m.headers())[REASON_HEADER] for m in got)
