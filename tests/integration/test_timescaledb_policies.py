"""TimescaleDB's own jobs on our schema: they run by themselves and keep the answers.

Each test has a database of its own (migrated like production), so shortening its jobs'
schedules or dropping chunks never touches the session database other tests share.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from schemas.metric_policies import MetricPolicySettings, apply_policies
from schemas.migrate import migrate
from speed_layer.metrics_sql import STAGE_METRICS, UPSERT_METRICS_UNIQUE

_ROWS = """
INSERT INTO metrics_1m (bucket, project_id, api_key, endpoint, method, status_class,
                        request_count, error_count, server_error_count, latency_sum,
                        latency_min, latency_max, latency_digest, bytes_in, bytes_out)
SELECT b, %(project)s, 'k' || k, '/e' || e, 'GET', 2, 10 + k, 1, 0, 100.0 * k, 1.0, 10.0 + k,
       (SELECT tdigest(v::float8, 200) FROM generate_series(1, 10 + k) v), 100, 1000
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute',
                     interval '1 minute') b,
     generate_series(1, 3) k, generate_series(1, 2) e"""

_ANSWERS = """
SELECT date_trunc('hour', bucket), api_key, sum(request_count), sum(latency_sum),
       min(latency_min), max(latency_max),
       round(tdigest_percentile(latency_digest, 0.9)::numeric, 6)
FROM {} WHERE project_id = %s GROUP BY 1, 2 ORDER BY 1, 2"""


@pytest.fixture
def own_db(stack, db) -> Iterator[psycopg.Connection]:
    """A migrated database of this test only (its own TimescaleDB job scheduler)."""
    name = f"policies_{uuid.uuid4().hex[:10]}"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = stack.database_url.rpartition("/")
    url = f"{base}/{name}"
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            yield conn
    finally:
        db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _job(conn: psycopg.Connection, table: str, proc: str) -> int:
    row = conn.execute("SELECT job_id FROM timescaledb_information.jobs"
                       " WHERE hypertable_name = %s AND proc_name = %s", (table, proc)).fetchone()
    assert row is not None, (table, proc)
    return int(row[0])


def _successes(conn: psycopg.Connection, job: int) -> int:
    row = conn.execute("SELECT total_successes FROM timescaledb_information.job_stats"
                       " WHERE job_id = %s", (job,)).fetchone()
    return int(row[0] or 0) if row else 0  # NULL while its first run is under way


def _run_soon_and_wait(conn: psycopg.Connection, jobs: list[int], timeout: float = 90.0) -> None:
    """Schedule the jobs every second from now; wait for a new successful run of each.

    The scheduler runs them: nothing here calls run_job.
    """
    before = {job: _successes(conn, job) for job in jobs}
    for job in jobs:
        conn.execute("SELECT alter_job(%s, schedule_interval => INTERVAL '1 second',"
                     " next_start => now())", (job,))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_successes(conn, job) > before[job] for job in jobs):
            break
        time.sleep(0.5)
    stats = conn.execute(
        "SELECT job_id, last_run_status, total_successes, total_failures"
        " FROM timescaledb_information.job_stats WHERE job_id = ANY(%s)", (jobs,)).fetchall()
    errors = conn.execute("SELECT job_id, err_message FROM timescaledb_information.job_errors"
                          " WHERE job_id = ANY(%s)", (jobs,)).fetchall()
    assert all(s[1] == "Success" and s[2] > before[s[0]] for s in stats), (stats, errors)
    assert len(stats) == len(jobs) and not errors, errors
    for job in jobs:  # back to a calm schedule, so nothing moves while we look
        conn.execute("SELECT alter_job(%s, schedule_interval => INTERVAL '1 hour',"
                     " next_start => now() + INTERVAL '1 hour')", (job,))


def _hour(delta_hours: int) -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=delta_hours)


def test_policies_compress_old_chunks_refresh_aggregates_and_answers_stay(own_db):
    conn, project = own_db, "p-compress"
    conn.execute(_ROWS, {"project": project, "start": _hour(6), "end": _hour(0)})
    conn.execute(_ROWS, {"project": project, "start": _hour(0),
                         "end": datetime.now(UTC).replace(second=0, microsecond=0)})
    before = conn.execute(sql.SQL(_ANSWERS).format(sql.Identifier("metrics_1m")),
                          (project,)).fetchall()
    assert len(before) >= 6 * 3
    rows = conn.execute("SELECT count(*) FROM metrics_1m WHERE project_id = %s",
                        (project,)).fetchone()

    compress = _job(conn, "metrics_1m", "policy_compression")
    refresh = _job(conn, "metrics_1h", "policy_refresh_continuous_aggregate")
    for job in (compress, refresh):
        _run_soon_and_wait(conn, [job])

    chunks = conn.execute(
        "SELECT range_start, is_compressed FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'metrics_1m' ORDER BY range_start").fetchall()
    # chunks that ended more than 2 hours ago are compressed, the recent ones are not
    assert [c for c, done in chunks if done] == [_hour(h) for h in range(6, 2, -1)]
    assert all(not done for c, done in chunks if c >= _hour(1))
    after = conn.execute(sql.SQL(_ANSWERS).format(sql.Identifier("metrics_1m")),
                         (project,)).fetchall()
    assert after == before  # compressed chunks answer exactly as before
    hourly = conn.execute(sql.SQL(_ANSWERS).format(sql.Identifier("metrics_1h")),
                          (project,)).fetchall()
    assert [r[:-1] for r in hourly] == [r[:-1] for r in before]
    # the hour's digest is a merge of merges: the same percentile within t-digest error
    assert [float(r[-1]) for r in hourly] == pytest.approx([float(r[-1]) for r in before],
                                                          rel=0.02)
    size = conn.execute("SELECT before_compression_total_bytes, after_compression_total_bytes"
                        " FROM hypertable_compression_stats('metrics_1m')").fetchone()
    assert size[1] < size[0]

    # A replay re-emits an hour that is compressed by now: the speed layer's upsert replaces.
    with conn.transaction():
        conn.execute(STAGE_METRICS)
        conn.execute(
            "INSERT INTO speed_stage SELECT 0, (extract(epoch FROM bucket) * 1e6)::bigint,"
            " project_id, api_key, endpoint, method, status_class, 7, 0, 0, 7.0, 1.0, 1.0,"
            " latency_digest, 1, 1 FROM metrics_1m WHERE project_id = %s AND bucket >= %s"
            " AND bucket < %s", (project, _hour(5), _hour(4)))
        conn.execute(UPSERT_METRICS_UNIQUE)
    replayed = conn.execute(
        "SELECT count(*), sum(request_count), min(request_count) FROM metrics_1m"
        " WHERE project_id = %s AND bucket >= %s AND bucket < %s",
        (project, _hour(5), _hour(4))).fetchone()
    assert replayed == (60 * 3 * 2, 7 * 60 * 3 * 2, 7)
    assert conn.execute("SELECT count(*) FROM metrics_1m WHERE project_id = %s",
                        (project,)).fetchone() == rows  # replaced, not added
    _run_soon_and_wait(conn, [refresh])
    hour = conn.execute("SELECT sum(request_count) FROM metrics_1h WHERE project_id = %s"
                        " AND bucket = %s", (project, _hour(5))).fetchone()
    assert hour == (7 * 60 * 3 * 2,)


def test_retention_drops_only_what_is_past_its_horizon(own_db):
    conn, project = own_db, "p-retain"
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ages = {"3 years": timedelta(days=3 * 365), "1 year": timedelta(days=365),
            "40 days": timedelta(days=40), "20 days": timedelta(days=20)}
    for age in ages.values():
        conn.execute(_ROWS, {"project": project, "start": now - age,
                             "end": now - age + timedelta(minutes=2)})
    # the old hours and days are materialized (as their refresh policies did back then)
    for view in ("metrics_1h", "metrics_1d"):
        conn.execute("CALL refresh_continuous_aggregate(%s, %s, %s)",
                     (view, now - ages["3 years"] - timedelta(days=2), now - timedelta(days=2)))
    for age in (timedelta(days=100), timedelta(days=10)):
        conn.execute("INSERT INTO late_events (project_id, api_key, bucket, event_count)"
                     " VALUES (%s, 'k1', %s, 3)", (project, now - age))

    for table in ("metrics_1m", "metrics_1h", "metrics_1d", "late_events"):
        _run_soon_and_wait(conn, [_job(conn, table, "policy_retention")])

    def ages_left(table: str) -> set[str]:
        rows = conn.execute(sql.SQL("SELECT DISTINCT bucket FROM {} WHERE project_id = %s")
                            .format(sql.Identifier(table)), (project,)).fetchall()
        return {name for name, age in ages.items()
                if any(abs(r[0] - (now - age)) < timedelta(days=1) for r in rows)}

    assert ages_left("metrics_1m") == {"20 days"}  # 30 days
    assert ages_left("metrics_1h") == {"1 year", "40 days", "20 days"}  # 2 years
    assert ages_left("metrics_1d") == {"1 year", "40 days", "20 days"}
    late = conn.execute("SELECT bucket FROM late_events WHERE project_id = %s",
                        (project,)).fetchall()
    assert late == [(now - timedelta(days=10),)]  # 90 days


def test_policy_settings_reach_the_jobs(own_db):
    conn = own_db
    settings = MetricPolicySettings(compress_after="3 hours", retention_1m="14 days")
    assert sorted(apply_policies(conn, settings)) == [  # every table of the minute level
        "metrics_1m compress_after = 3 hours", "metrics_1m drop_after = 14 days",
        "metrics_consumers_1m drop_after = 14 days", "metrics_endpoints_1m drop_after = 14 days",
        "metrics_project_1m drop_after = 14 days"]
    assert apply_policies(conn, settings) == []  # applied once: nothing left to change
    configs = dict(conn.execute(
        "SELECT proc_name, config FROM timescaledb_information.jobs"
        " WHERE hypertable_name = 'metrics_1m'").fetchall())
    assert configs["policy_compression"]["compress_after"] == "3 hours"
    assert configs["policy_retention"]["drop_after"] == "14 days"


@pytest.fixture
def own_url(stack, db) -> Iterator[str]:
    """An empty database of this test only; the test migrates it as far as it wants."""
    name = f"policies_{uuid.uuid4().hex[:10]}"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = stack.database_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


_PROJECT_ANSWERS = """
SELECT bucket, sum(request_count)::bigint, max(latency_max),
       round(tdigest_percentile(latency_digest, 0.9)::numeric, 6)
FROM {} WHERE project_id = %s GROUP BY 1 ORDER BY 1"""


def test_a_database_from_before_0075_keeps_its_answers_and_gets_one_layout(own_url, tmp_path):
    """0075's per-project levels carry the old history; 0076 compresses new chunks by project.

    Chunks compressed before 0076 keep their layout (and their answers).
    """
    from schemas.migrate import MIGRATIONS_DIR

    for f in MIGRATIONS_DIR.glob("*.sql"):
        if int(f.name[:4]) < 75:
            (tmp_path / f.name).symlink_to(f)
    migrate(own_url, tmp_path)
    project = "p-before"
    with psycopg.connect(own_url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        # 12 days ago (older than every refresh window) and the last 5 hours
        conn.execute(_ROWS, {"project": project, "start": _hour(12 * 24 + 3),
                             "end": _hour(12 * 24)})
        conn.execute(_ROWS, {"project": project, "start": _hour(5), "end": _hour(0)})
        conn.execute("CALL refresh_continuous_aggregate('metrics_endpoints_1m', NULL, %s)",
                     (_hour(0),))
        for level in ("1h", "1d"):
            conn.execute(f"CALL refresh_continuous_aggregate('metrics_endpoints_{level}',"
                         " NULL, %s)", (_hour(0).replace(hour=0),))
        old = conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('metrics_1m',"
                           " older_than => now() - INTERVAL '2 hours') c").fetchone()[0]
        assert old >= 5
        expected = {level: conn.execute(sql.SQL(_PROJECT_ANSWERS).format(sql.Identifier(
            f"metrics_endpoints_{level}")), (project,)).fetchall() for level in ("1m", "1h")}
        minutes = conn.execute("SELECT count(*), sum(request_count) FROM metrics_1m").fetchone()

    migrate(own_url)
    with psycopg.connect(own_url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        assert conn.execute("SELECT count(*), sum(request_count) FROM metrics_1m"
                            ).fetchone() == minutes

        def project_answers(level: str) -> list[tuple]:
            return conn.execute(sql.SQL(_PROJECT_ANSWERS).format(sql.Identifier(
                f"metrics_project_{level}")), (project,)).fetchall()

        # before any refresh (real-time from the level below), then after the policies ran
        for refreshed in (False, True):
            for level in ("1m", "1h"):
                got = project_answers(level)
                marks = conn.execute(
                    "SELECT view_name, _timescaledb_functions.to_timestamp("
                    "_timescaledb_functions.cagg_watermark(h.id))::text FROM"
                    " timescaledb_information.continuous_aggregates c"
                    " JOIN _timescaledb_catalog.hypertable h"
                    " ON h.table_name = c.materialization_hypertable_name").fetchall()
                assert [r[:3] for r in got] == [r[:3] for r in expected[level]], (
                    level, refreshed, marks)
                assert [float(r[3]) for r in got] == pytest.approx(
                    [float(r[3]) for r in expected[level]], rel=0.02)
            for level in ("1m", "1h", "1d"):  # the scheduler runs them, one level at a time
                _run_soon_and_wait(conn, [_job(conn, f"metrics_project_{level}",
                                               "policy_refresh_continuous_aggregate")])
        # the days no refresh window reaches come from 0075's copy
        (days,) = conn.execute("SELECT sum(request_count) FROM metrics_project_1d"
                               " WHERE project_id = %s AND bucket"
                               " < date_trunc('day', now() - INTERVAL '8 days')",
                               (project,)).fetchone()
        assert days == conn.execute("SELECT sum(request_count) FROM metrics_1m WHERE"
                                    " bucket < date_trunc('day', now() - INTERVAL '8 days')"
                                    ).fetchone()[0] > 0

        # the next chunk compressed gets 0076's layout; the old ones keep 0071's
        hourly = sql.SQL(_PROJECT_ANSWERS).format(sql.Identifier("metrics_1m"))
        answers = conn.execute(hourly, (project,)).fetchall()
        conn.execute("SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks("
                     "'metrics_1m', older_than => now() - INTERVAL '1 hour') c")
        layouts = conn.execute(
            "SELECT segmentby, orderby, count(*) FROM timescaledb_information."
            "chunk_compression_settings WHERE hypertable = 'metrics_1m'::regclass"
            " GROUP BY 1, 2 ORDER BY 3 DESC").fetchall()
        assert layouts == [("project_id,api_key", "bucket", old),
                           ("project_id", "api_key,endpoint,method,status_class,bucket", 1)]
        assert conn.execute(hourly, (project,)).fetchall() == answers
