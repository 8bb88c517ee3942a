"""The local PostgreSQL: extensions and the tables of migrations 0001-0003."""

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
        DO UPDATE SET request_count = EXCLUDED.request_count, updated_at = now()
        RETURNING tableoid::regclass::text
        """,
        [bucket, project, DIGEST_LITERAL],
    ).fetchone()
    return row[0]


def test_metrics_1m_row_with_tdigest_literal_lands_in_a_daily_partition(db, project):
    bucket = datetime.now(UTC).replace(second=0, microsecond=0)
    partition = _insert_metric(db, project, bucket)
    assert partition == f"metrics_1m_p{bucket:%Y_%m_%d}"
    assert _insert_metric(db, project, bucket) == partition  # re-emitting replaces the row
    count, median = db.execute(
        "SELECT sum(request_count), tdigest_percentile(latency_digest, 0.5) FROM metrics_1m "
        "WHERE project_id = %s AND bucket = %s", [project, bucket],
    ).fetchone()
    assert count == 5
    assert 2.0 <= median <= 4.0


def test_metrics_1m_row_outside_premade_partitions_goes_to_default(db, project):
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    assert _insert_metric(db, project, long_ago) == "metrics_1m_default"
    future = datetime.now(UTC) + timedelta(days=400)
    assert _insert_metric(db, project, future) == "metrics_1m_default"
    # Rows left in the default partition would block pg_partman from creating those days.
    db.execute("DELETE FROM metrics_1m_default WHERE project_id = %s", [project])


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


def test_metrics_1m_partitions_old_and_new_keep_room_for_hot_updates(db):
    """fillfactor 70 (migration 0023) on every day, including days pg_partman makes later."""
    day = (datetime.now(UTC) + timedelta(days=12)).replace(hour=0, minute=0, second=0,
                                                            microsecond=0)
    db.execute("SELECT partman.create_partition_time('public.metrics_1m', ARRAY[%s::timestamptz])",
               [day])
    options = dict(db.execute(
        "SELECT c.relname, c.reloptions FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'metrics_1m'::regclass").fetchall())
    assert options[f"metrics_1m_p{day:%Y_%m_%d}"] == ["fillfactor=70"]
    assert all(o == ["fillfactor=70"] for o in options.values()), options
