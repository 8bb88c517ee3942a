"""metrics_1h / metrics_1d (continuous aggregates) against the minutes the speed layer wrote.

The data is live: from an hour before today's midnight to now, so it spans hour and day
boundaries, materialized buckets (the refresh policies are run) and the open hour and day
(real-time aggregation). More events for the same minutes play the re-emits: within the
open hour they show at once; in materialized hours (a replay or backlog older than the
refresh policy's end offset) after the policy's next run.
"""

from datetime import UTC, datetime, timedelta

import pytest
from bytewax.testing import run_main

from query_api.params import Rollup, TimeRange
from query_api.repository import totals
from schemas.metric_tables import ALL_TABLES
from speed_layer.dataflow import build_flow
from speed_layer.items import WINDOW_US
from speed_layer.runner import ensure_dead_letter_topic
from tests.integration.speed_layer.conftest import produce
from tests.unit.speed_layer.fixtures import make_records

_SUMS = ("request_count", "error_count", "server_error_count", "bytes_in", "bytes_out")
_KEY = "project_id, api_key, endpoint, method, status_class"


def rolled(db, prefix: str, source: str, unit: str, key: str = _KEY) -> dict:
    """Per (unit bucket, series): the sums, min, max and latency sum of ``source``'s rows."""
    width = key.count(",") + 2
    rows = db.execute(
        f"SELECT date_trunc(%s, bucket), {key}, {', '.join(f'sum({c})' for c in _SUMS)},"  # noqa: S608
        f" min(latency_min), max(latency_max), round(sum(latency_sum)::numeric, 6)"
        f" FROM {source} WHERE project_id LIKE %s"
        f" GROUP BY {', '.join(str(i) for i in range(1, width + 1))}",
        (unit, prefix + "%"),
    ).fetchall()
    return {tuple(r[:width]): tuple(r[width:]) for r in rows}


def run_policy(db, view: str) -> None:
    """What the refresh policy does on its schedule (test_policies shows it runs alone)."""
    (job,) = db.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_name = %s"
        " AND proc_name = 'policy_refresh_continuous_aggregate'", (view,)).fetchone()
    db.execute("CALL run_job(%s)", (job,))


def watermark(db, view: str) -> datetime:
    (mark,) = db.execute(
        "SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark("
        "  h.id)) FROM timescaledb_information.continuous_aggregates c"
        " JOIN _timescaledb_catalog.hypertable h"
        "   ON h.schema_name = c.materialization_hypertable_schema"
        "  AND h.table_name = c.materialization_hypertable_name WHERE c.view_name = %s",
        (view,)).fetchone()
    return mark


def assert_levels_agree(db, prefix: str) -> None:
    for table in ALL_TABLES[1:]:
        key = ", ".join(table.key_names)
        for unit in ("minute", "hour", "day"):
            if table.seconds <= {"minute": 60, "hour": 3600, "day": 86400}[unit]:
                assert rolled(db, prefix, table.name, unit, key) == rolled(
                    db, prefix, "metrics_1m", unit, key), (table.name, unit)


def run_policies(db) -> None:
    for table in ALL_TABLES[1:]:  # each level after the one it aggregates
        run_policy(db, table.name)


def test_aggregates_equal_their_minutes_across_boundaries_reemits_and_open_buckets(
        stack, db, speed_settings, project_prefix):
    now = datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=1)
    minutes = int((now - start).total_seconds() // 60) + 1
    settings = speed_settings(partitions=2, allowed_lateness_s=3 * 86400)
    records = make_records(8_000, minutes=minutes, projects=2, keys=3, seed=21,
                           start_us=int(start.timestamp() * 1e6), project_prefix=project_prefix)
    records = [r for r in records if r.timestamp_us < now.timestamp() * 1e6]
    ensure_dead_letter_topic(settings)
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records[:5_000])
    run_main(build_flow(settings))
    # These minutes are hours old when written (a backfill): hours the policy had already
    # passed (it runs every 5 minutes) show them after its next run, as here.
    run_policies(db)
    # finished hours and yesterday are materialized, the open hour and day are not
    assert watermark(db, "metrics_1h") > start
    assert watermark(db, "metrics_1h") <= now.replace(minute=0, second=0, microsecond=0)
    assert watermark(db, "metrics_1d") <= now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert_levels_agree(db, project_prefix)

    # Re-emits: more events for the same minutes, materialized hours and open ones alike.
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records[5_000:])
    run_main(build_flow(settings))
    open_hour = now.replace(minute=0, second=0, microsecond=0)
    fresh = {k: v for k, v in rolled(db, project_prefix, "metrics_1m", "hour").items()
             if k[0] >= open_hour}
    assert fresh, "the open hour has minutes"
    assert fresh == {k: v for k, v in rolled(db, project_prefix, "metrics_1h", "hour").items()
                     if k[0] >= open_hour}  # the open hour follows at once
    run_policies(db)
    assert_levels_agree(db, project_prefix)
    sums = [db.execute(f"SELECT sum(request_count) FROM {t} WHERE project_id LIKE %s",  # noqa: S608
                         (project_prefix + "%",)).fetchone()[0]
              for t in ("metrics_1m", "metrics_1h", "metrics_1d")]
    assert sums == [len(records)] * 3

    # The query API's totals for today (the open day) are the same from every level.
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    day = TimeRange(today, today + timedelta(days=1))
    for project in {r.project_id for r in records}:
        answers = [totals(db, level, project, day) for level in Rollup]
        counts = [{k: v for k, v in a.items() if k not in ("percentiles", "latency_sum")}
                  for a in answers]
        assert counts[0]["requests"] > 0
        assert counts[0] == counts[1] == counts[2], counts
        # float sums in another order: equal to the last few bits
        assert [a["latency_sum"] for a in answers] == pytest.approx(
            [answers[0]["latency_sum"]] * 3, rel=1e-12)

    # Digests merged in SQL: each level's percentile is the minutes' within t-digest error.
    pcts = [db.execute(
        f"SELECT tdigest_percentile(latency_digest, 0.99), min(latency_min), max(latency_max)"  # noqa: S608
        f" FROM {t} WHERE project_id LIKE %s", (project_prefix + "%",)).fetchone()
        for t in ("metrics_1m", "metrics_1h", "metrics_1d")]
    for p99, low, high in pcts:
        assert low <= p99 <= high
        assert p99 == pytest.approx(pcts[0][0], rel=0.02)


def test_refresh_windows_cover_the_lateness(db):
    """An hour is materialized only once no window of it can still change."""
    lateness = timedelta(minutes=5)
    offsets = dict(db.execute(
        "SELECT hypertable_name, (config->>'end_offset')::interval FROM"
        " timescaledb_information.jobs WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        " AND hypertable_name IN ('metrics_1h', 'metrics_1d')").fetchall())
    assert offsets["metrics_1h"] > lateness + timedelta(seconds=WINDOW_US / 1e6)
    assert offsets["metrics_1d"] > offsets["metrics_1h"]
