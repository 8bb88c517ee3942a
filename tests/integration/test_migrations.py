"""The migration runner against real databases, each test on a database of its own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from schemas.metric_tables import ALL_TABLES
from schemas.migrate import REWRITTEN, MigrationError, discover, migrate, status


@pytest.fixture
def empty_database(stack, db) -> Iterator[str]:
    """A new, empty database; returns its URL."""
    name = f"migrate_{uuid.uuid4().hex[:10]}"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = stack.database_url.rpartition("/")
    yield f"{base}/{name}"
    db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrations_apply_twice_and_record_every_version(empty_database):
    files = discover()
    assert [m.version for m in files][:3] == [1, 2, 3]
    assert migrate(empty_database) == files
    assert migrate(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        recorded = conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert recorded == [(m.version, m.name, m.checksum) for m in files]
    assert {row.state for row in status(empty_database)} == {"applied"}


def test_concurrent_runners_apply_each_migration_once(empty_database):
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: migrate(empty_database), range(3)))
    applied = sorted(m.version for result in results for m in result)
    assert applied == [m.version for m in discover()]


def _write(directory: Path, name: str, body: str) -> None:
    (directory / name).write_text(body)


def test_changed_applied_migration_is_refused(empty_database, tmp_path):
    _write(tmp_path, "0001_one.sql", "CREATE TABLE one (id int);")
    migrate(empty_database, tmp_path)
    _write(tmp_path, "0001_one.sql", "CREATE TABLE one (id bigint);")
    with pytest.raises(MigrationError, match="0001_one.sql"):
        migrate(empty_database, tmp_path)
    assert [row.state for row in status(empty_database, tmp_path)] == ["changed"]


def test_failed_migration_leaves_nothing_behind(empty_database, tmp_path):
    _write(tmp_path, "0001_good.sql", "CREATE TABLE good (id int);")
    _write(tmp_path, "0002_bad.sql", "CREATE TABLE half (id int);\nSELECT no_such_function();")
    with pytest.raises(MigrationError, match="0002_bad.sql"):
        migrate(empty_database, tmp_path)
    states = {row.name: row.state for row in status(empty_database, tmp_path)}
    assert states == {"good": "applied", "bad": "pending"}
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)


def test_pending_file_older_than_applied_ones_is_still_applied(empty_database, tmp_path):
    _write(tmp_path, "0002_later.sql", "CREATE TABLE later (id int);")
    migrate(empty_database, tmp_path)
    _write(tmp_path, "0001_earlier.sql", "CREATE TABLE earlier (id int);")
    assert [m.version for m in migrate(empty_database, tmp_path)] == [1]


def test_badly_named_file_is_refused(tmp_path):
    _write(tmp_path, "1_oops.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_lower_snake"):
        discover(tmp_path)


_OLD_MINUTES = """
INSERT INTO metrics_1m (bucket, project_id, api_key, endpoint, method, status_class,
                        request_count, error_count, server_error_count, latency_sum,
                        latency_min, latency_max, latency_digest, bytes_in, bytes_out)
SELECT b, 'p-old', 'k' || k, '/e', 'GET', 2, k, 0, 0, 10.0 * k, 1.0, 5.0 * k,
       (SELECT tdigest(v::float8, 200) FROM generate_series(1, k) v), 10, 100
FROM generate_series(%(start)s::timestamptz, %(start)s::timestamptz + interval '89 minutes',
                     interval '1 minute') b, generate_series(1, 2) k"""

# The old rollup loop's rows: sums of the minutes, plus history older than the minutes.
_OLD_ROLLUP = """
INSERT INTO {target} (bucket, project_id, api_key, endpoint, method, status_class,
                      request_count, error_count, server_error_count, latency_sum,
                      latency_min, latency_max, latency_digest, bytes_in, bytes_out)
SELECT date_trunc(%(unit)s, bucket), project_id, api_key, endpoint, method, status_class,
       sum(request_count), sum(error_count), sum(server_error_count), sum(latency_sum),
       min(latency_min), max(latency_max), tdigest(latency_digest), sum(bytes_in),
       sum(bytes_out)
FROM {source} GROUP BY 1, 2, 3, 4, 5, 6
UNION ALL
SELECT %(history)s, 'p-old', 'k9', '/gone', 'GET', 2, 1000, 1, 1, 5.0, 5.0, 5.0,
       (SELECT tdigest(5.0::float8, 200)), 1, 1"""

_LEVEL = """
SELECT bucket, project_id, api_key, endpoint, method, status_class, request_count,
       error_count, server_error_count, latency_sum, latency_min, latency_max,
       tdigest_percentile(latency_digest, 0.5), bytes_in, bytes_out
FROM {} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15 ORDER BY 1, 2, 3, 4, 5, 6"""


def _wait_for_refresh(conn: psycopg.Connection, timeout: float = 90.0) -> None:
    """The hourly and daily refresh policies run by themselves once created: wait for both."""
    deadline = time.monotonic() + timeout
    done: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        done = conn.execute(
            "SELECT j.hypertable_name, s.last_run_status FROM timescaledb_information.jobs j"
            " JOIN timescaledb_information.job_stats s USING (job_id)"
            " WHERE j.proc_name = 'policy_refresh_continuous_aggregate'"
            " AND j.hypertable_name IN ('metrics_1h', 'metrics_1d')"
            " AND s.total_successes > 0").fetchall()
        if len(done) == 2:
            return
        time.sleep(0.5)
    raise AssertionError(f"refresh policies did not run: {done}")


def test_pre_timescaledb_database_keeps_every_row(empty_database, tmp_path):
    for migration in discover():
        if migration.version < 70:
            _write(tmp_path, migration.filename, migration.sql)
    migrate(empty_database, tmp_path)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for start in (now - timedelta(days=2, minutes=30), now - timedelta(days=10)):
            conn.execute(_OLD_MINUTES, {"start": start})
        for target, source, unit, history in (
                ("metrics_1h", "metrics_1m", "hour", now - timedelta(days=40)),
                ("metrics_1d", "metrics_1h", "day", now.replace(hour=0) - timedelta(days=400))):
            conn.execute(sql.SQL(_OLD_ROLLUP).format(target=sql.Identifier(target),
                                                     source=sql.Identifier(source)),
                         {"unit": unit, "history": history})
        conn.execute("INSERT INTO late_events (project_id, api_key, bucket, event_count)"
                     " VALUES ('p-old', 'k1', %s, 4)", (now - timedelta(days=3),))
        conn.execute("INSERT INTO speed_rollup_pending (level, project_id, bucket)"
                     " VALUES ('1h', 'p-old', %s)", (now,))
        before = {t: conn.execute(sql.SQL(_LEVEL).format(sql.Identifier(t))).fetchall()
                  for t in ("metrics_1m", "metrics_1h", "metrics_1d")}
        late = conn.execute("SELECT * FROM late_events").fetchall()

    applied = migrate(empty_database)
    assert [m.version for m in applied] == [m.version for m in discover() if m.version >= 70]
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        _wait_for_refresh(conn)
        after = {t: conn.execute(sql.SQL(_LEVEL).format(sql.Identifier(t))).fetchall()
                 for t in before}
        kinds = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
            " WHERE hypertable_schema = 'public' ORDER BY 1").fetchall()
        views = conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates"
                             " ORDER BY 1").fetchall()
        assert conn.execute("SELECT * FROM late_events").fetchall() == late
        gone = conn.execute("SELECT to_regclass('speed_rollup_pending'),"
                            " to_regnamespace('partman')").fetchone()
    assert len(before["metrics_1m"]) == 2 * 90 * 2
    assert after == before  # every minute, every old hour and day (two years of history)
    assert kinds == [("late_events",), ("metrics_1m",)]
    assert views == sorted((t.name,) for t in ALL_TABLES if t.source)
    assert gone == (None, None)


def test_database_that_applied_a_rewritten_migration_is_accepted(empty_database):
    migrate(empty_database)
    (old,) = REWRITTEN[3]
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = 3", (old,))
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2")
    assert {row.version: row.state for row in status(empty_database)}[3] == "applied"
    with pytest.raises(MigrationError, match="0002_projects_and_keys.sql"):
        migrate(empty_database)  # any other changed text is still refused
