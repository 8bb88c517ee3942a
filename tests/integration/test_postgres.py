"""The local PostgreSQL: TimescaleDB preloaded, tdigest, and the metrics_1m hypertable."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

DIGEST_LITERAL = (
    "flags 0 count 5 compression 100 centroids 5 "
    "(1.000000, 1) (2.000000, 1) (3.000000, 1) (4.000000, 1) (50.000000, 1)"
)


def test_tdigest_percentile_of_a_series_is_near_its_median(db):
    db.execute("CREATE EXTENSION IF NOT EXISTS tdigest")
    (median,) = db.execute(
        "SELECT tdigest_percentile(x, 100, 0.5) FROM generate_series(1, 10001) AS x"
    ).fetchone()
    assert median == pytest.approx(5001, rel=0.01)


@pytest.fixture
def project() -> str:
    """A project id of this test only, so tests sharing the session database never meet."""
    return f"stack-{uuid.uuid4().hex[:10]}"


def _insert_metric(db, project: str, bucket: datetime) -> str:
    row = db.execute(
        """
        INSERT INTO metrics_1m (bucket, project_id, api_key, endpoint, method, status_class,
                                request_count, error_count, server_error_count, latency_sum,
                                latency_min, latency_max, latency_digest, bytes_in, bytes_out)
        VALUES (%s, %s, 'k1', '/users/{id}', 'GET', 2, 5, 0, 0, 60, 1, 50, %s::tdigest, 10, 500)
        ON CONFLICT (project_id, bucket, api_key, endpoint, method, status_class)
        DO UPDATE SET request_count = EXCLUDED.request_count
        RETURNING tableoid::regclass::text
        """,
        [bucket, project, DIGEST_LITERAL],
    ).fetchone()
    return row[0]


def test_server_preloads_timescaledb_without_telemetry(db):
    settings = dict(db.execute(
        "SELECT name, setting FROM pg_settings WHERE name IN ('shared_preload_libraries',"
        " 'timescaledb.telemetry_level', 'timescaledb.max_background_workers')").fetchall())
    assert "timescaledb" in settings["shared_preload_libraries"]
    assert settings["timescaledb.telemetry_level"] == "off"
    assert int(settings["timescaledb.max_background_workers"]) >= 8
    assert db.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                      ).fetchone() == ("2.28.3",)


def test_metrics_1m_row_with_tdigest_literal_lands_in_an_hourly_chunk(db, project):
    bucket = datetime.now(UTC).replace(second=0, microsecond=0)
    chunk = _insert_metric(db, project, bucket)
    assert chunk.startswith("_timescaledb_internal._hyper_")
    assert _insert_metric(db, project, bucket) == chunk  # re-emitting replaces the row
    count, median = db.execute(
        "SELECT sum(request_count), tdigest_percentile(latency_digest, 0.5) FROM metrics_1m "
        "WHERE project_id = %s AND bucket = %s", [project, bucket],
    ).fetchone()
    assert count == 5
    assert 2.0 <= median <= 4.0
    start, end = db.execute(
        "SELECT range_start, range_end FROM timescaledb_information.chunks"
        " WHERE format('%%I.%%I', chunk_schema, chunk_name) = %s", [chunk]).fetchone()
    assert start == bucket.replace(minute=0) and end - start == timedelta(hours=1)


def test_metrics_1m_takes_any_bucket_far_from_now(db, project):
    for bucket in (datetime(2001, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=400)):
        assert _insert_metric(db, project, bucket).startswith("_timescaledb_internal.")
    db.execute("DELETE FROM metrics_1m WHERE project_id = %s", [project])


def test_api_keys_store_only_a_sha256_and_reject_unknown_kinds(db, project):
    db.execute("INSERT INTO projects (project_id, name) VALUES (%s, 'Acme')", [project])
    db.execute(
        "INSERT INTO api_keys (key_id, project_id, kind, key_hash, prefix, name) "
        "VALUES (%s, %s, 'write', %s, 'tsk_se', 'agent')",
        [f"{project}-k1", project, hashlib.sha256(project.encode()).digest()],
    )
    privacy = db.execute("SELECT ip_privacy FROM projects WHERE project_id = %s",
                         [project]).fetchone()
    assert privacy == ("keep",)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO api_keys (key_id, project_id, kind, key_hash, prefix) "
            "VALUES (%s, %s, 'superuser', %s, 'x')",
            [f"{project}-k2", project, hashlib.sha256(b"other" + project.encode()).digest()],
        )
    db.execute("DELETE FROM projects WHERE project_id = %s", [project])


def test_metrics_1m_chunks_old_and_new_keep_room_for_hot_updates(db, project):
    """fillfactor 70 on the hypertable and on every chunk it creates."""
    _insert_metric(db, project, datetime.now(UTC) + timedelta(days=12))
    options = dict(db.execute(
        "SELECT c.relname, c.reloptions FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'metrics_1m'::regclass").fetchall())
    assert options and all(o == ["fillfactor=70"] for o in options.values()), options
    db.execute("DELETE FROM metrics_1m WHERE project_id = %s", [project])


def test_a_server_without_timescaledb_is_refused_with_the_fix(tmp_path):
    from turnstile_cli.stack import PostgresServer, StackError

    (tmp_path / "pg" / "bin").mkdir(parents=True)
    (tmp_path / "pg" / "lib").mkdir()
    server = PostgresServer(tmp_path / "state", port=1, bin_dir=tmp_path / "pg" / "bin")
    with pytest.raises(StackError, match=r"TimescaleDB is not installed .*deploy/install\.sh"):
        server.start(timeout=1)
