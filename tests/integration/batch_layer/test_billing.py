import json
import random
from collections import Counter
from datetime import UTC, datetime

import msgspec

from batch_layer.billing import TierRule, tier_of
from batch_layer.jobs import run_day
from batch_layer.lake import open_lake
from batch_layer.repository import set_tiers
from tests.integration.batch_layer.conftest import drain, produce, writer_settings
from tests.unit.batch_layer.fixtures import DAY, DAY_START_US, make_events, truth_of

PROJECTS = ("acme", "globex")
TIERS = [TierRule("/v1/search*", "premium"), TierRule("/v1/*", "standard")]


def tier_for(project, endpoint):
    return tier_of(endpoint, TIERS if project == "acme" else [], "default")


def setup_projects(db):
    for p in PROJECTS:
        db.execute("INSERT INTO projects (project_id, name) VALUES (%s, %s)"
                   " ON CONFLICT DO NOTHING", (p, p))
    set_tiers(db, "acme", TIERS)
    set_tiers(db, "globex", [])
    for table in ("billing_usage", "reconciliation"):
        db.execute(f"DELETE FROM {table} WHERE day = %s", (DAY,))  # noqa: S608


def billing_rows(db):
    rows = db.execute("SELECT project_id, api_key, total_requests, requests_by_tier,"
                      " error_count, server_error_count, bytes_in, bytes_out"
                      " FROM billing_usage WHERE day = %s", (DAY,)).fetchall()
    return {(p, k, DAY): r for p, k, *r in rows}


def assert_equals_truth(db, events):
    truth = truth_of(events, tier_for)
    got = billing_rows(db)
    assert set(got) == set(truth.total)
    for k, (total, tiers, errors, server_errors, bytes_in, bytes_out) in got.items():
        assert total == truth.total[k]
        assert (errors, server_errors) == (truth.errors[k], truth.server_errors[k])
        assert (bytes_in, bytes_out) == (truth.bytes_in[k], truth.bytes_out[k])
        assert tiers == {t: n for (p, a, d, t), n in truth.tiers.items() if (p, a, d) == k}


def plant_stream(db, events, late_ids):
    """Write what a correct speed layer would have: metrics_1m without the late events
    (duplicated batches counted once), and the late ones in late_events."""
    db.execute("DELETE FROM metrics_1m WHERE bucket >= %s AND bucket < %s::date + 1",
               (DAY, DAY))
    late = [e for e in events if e.event_id in late_ids]
    per_key = Counter((e.project_id, e.api_key) for e in events if e.event_id not in late_ids)
    for (p, k), n in per_key.items():
        db.execute("INSERT INTO metrics_1m (bucket, project_id, api_key, endpoint, method,"
                   " status_class, request_count) VALUES (%s, %s, %s, '/x', 'GET', 2, %s)",
                   (datetime(2026, 11, 20, 12, tzinfo=UTC), p, k, n))
    late_per_key = Counter((e.project_id, e.api_key) for e in late)
    for (p, k), n in late_per_key.items():
        db.execute("INSERT INTO late_events (project_id, api_key, bucket, event_count,"
                   " first_seen_at, last_seen_at) VALUES (%s, %s, %s, %s, now(), now())"
                   " ON CONFLICT (project_id, api_key, bucket) DO UPDATE"
                   " SET event_count = EXCLUDED.event_count",
                   (p, k, datetime(2026, 11, 20, 3, tzinfo=UTC), n))
    return late_per_key


def test_billing_equals_truth_with_duplicates_and_late_events_and_reconciles(
        stack, db, fresh_topic, tmp_path):
    setup_projects(db)
    topic = fresh_topic(partitions=3)
    events = make_events(6000, seed=21, projects=PROJECTS, keys=8)
    rng = random.Random(5)
    late = set(rng.sample(range(len(events)), len(events) // 50))  # 2 % late
    on_time = [e for i, e in enumerate(events) if i not in late]
    late_events = [msgspec.structs.replace(e, received_at_us=DAY_START_US + 86_400_000_000 * 2)
                   for i, e in enumerate(events) if i in late]
    # neighbouring days' events must not leak into the day
    others = make_events(500, seed=22, projects=PROJECTS, keys=8,
                         day_start_us=DAY_START_US + 86_400_000_000)
    produced = produce(stack.kafka_bootstrap, topic, on_time + others, duplicate_rate=0.01,
                       seed=3)
    assert produced.duplicated_batches > 0
    settings = writer_settings(stack, topic, str(tmp_path / "lake"))
    lake = open_lake(settings)
    drain(settings, lake, 3)
    first = run_day(settings, lake, db, DAY)
    assert_equals_truth(db, on_time)
    on_time_ids = {e.event_id for e in on_time}
    assert first.duplicates_removed == sum(
        1 for e in produced.duplicated_events if e.event_id in on_time_ids)
    # the late events arrive after the day was billed: re-running the day picks them up
    produce(stack.kafka_bootstrap, topic, late_events, seed=4)
    drain(settings, lake, 3)
    late_per_key = plant_stream(db, events, {e.event_id for i, e in enumerate(events) if i in late})
    run_day(settings, lake, db, DAY)
    run_day(settings, lake, db, DAY)  # idempotent
    assert_equals_truth(db, events)
    rec = db.execute("SELECT project_id, api_key, difference, late_beyond_lateness, status,"
                     " unexplained FROM reconciliation WHERE day = %s", (DAY,)).fetchall()
    assert rec and all(u == 0 for *_, u in rec)
    for p, k, difference, late_n, status, _ in rec:
        assert difference == late_n == late_per_key.get((p, k), 0)
        assert status == ("explained" if late_n else "ok")


def test_reconciliation_flags_an_unexplained_difference(stack, db, fresh_topic, tmp_path):
    setup_projects(db)
    topic = fresh_topic(partitions=1)
    events = make_events(300, seed=31, projects=("acme",), keys=2)
    produce(stack.kafka_bootstrap, topic, events)
    settings = writer_settings(stack, topic, str(tmp_path / "lake"))
    lake = open_lake(settings)
    drain(settings, lake, 1)
    plant_stream(db, events, set())
    db.execute("UPDATE metrics_1m SET request_count = request_count - 3"
               " WHERE project_id = 'acme' AND api_key = 'key-0' AND bucket::date = %s", (DAY,))
    db.execute("DELETE FROM late_events WHERE bucket::date = %s", (DAY,))
    result = run_day(settings, lake, db, DAY)
    assert result.unexplained_keys == 1
    status = dict(db.execute("SELECT api_key, status FROM reconciliation WHERE day = %s"
                             " AND project_id = 'acme'", (DAY,)).fetchall())
    assert status == {"key-0": "unexplained", "key-1": "ok"}
    usage = json.loads(json.dumps(billing_rows(db)[("acme", "key-0", DAY)][1]))
    assert sum(usage.values()) == sum(1 for e in events if e.api_key == "key-0")
