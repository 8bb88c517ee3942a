from bytewax.testing import run_main

from speed_layer.dataflow import build_flow
from speed_layer.items import WINDOW_US
from speed_layer.rollups import refresh_all
from speed_layer.runner import ensure_dead_letter_topic
from tests.integration.speed_layer.conftest import produce
from tests.integration.speed_layer.helpers import total
from tests.unit.speed_layer.fixtures import T0_US, make_records

_SUMS = ("request_count", "error_count", "server_error_count", "bytes_in", "bytes_out")


def rolled(db, prefix: str, source: str, width: str) -> dict:
    rows = db.execute(
        f"SELECT date_trunc(%s, bucket AT TIME ZONE 'UTC'), project_id, api_key, endpoint,"  # noqa: S608
        f" method, status_class, {', '.join(f'sum({c})' for c in _SUMS)}, min(latency_min),"
        f" max(latency_max), round(sum(latency_sum)::numeric, 6) FROM {source}"
        " WHERE project_id LIKE %s GROUP BY 1, 2, 3, 4, 5, 6",
        (width, prefix + "%"),
    ).fetchall()
    return {tuple(r[:6]): tuple(r[6:]) for r in rows}


def test_rollups_equal_the_sum_of_their_minutes(stack, db, speed_settings, project_prefix):
    settings = speed_settings(partitions=2, allowed_lateness_s=7200)
    # Two hours and a day boundary: 23:00-01:00.
    start = T0_US - 60 * WINDOW_US
    records = make_records(8_000, minutes=120, projects=2, keys=3, seed=13, start_us=start,
                           project_prefix=project_prefix)
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records[:5_000])
    ensure_dead_letter_topic(settings)
    run_main(build_flow(settings))
    refresh_all(settings)
    assert total(db, project_prefix, "metrics_1h") == 5_000
    # More minutes arrive: only the marked buckets are recomputed, and still add up.
    produce(stack.kafka_bootstrap, settings.kafka.events_topic, records[5_000:])
    run_main(build_flow(settings))
    result = refresh_all(settings)
    assert result.hours >= 1 and result.days >= 1
    for table in ("metrics_1m", "metrics_1h", "metrics_1d"):
        assert total(db, project_prefix, table) == len(records), table
    assert rolled(db, project_prefix, "metrics_1m", "hour") == rolled(
        db, project_prefix, "metrics_1h", "hour")
    assert rolled(db, project_prefix, "metrics_1m", "day") == rolled(
        db, project_prefix, "metrics_1d", "day")
    # Digests merged in SQL: the hour's p99 is between the minutes' min and max.
    row = db.execute(
        "SELECT tdigest_percentile(latency_digest, 0.99), min(latency_min), max(latency_max)"
        " FROM metrics_1d WHERE project_id LIKE %s", (project_prefix + "%",)).fetchone()
    assert row[1] <= row[0] <= row[2]
    assert refresh_all(settings).hours == 0  # nothing changed: nothing recomputed
