"""Incremental rollups metrics_1m → metrics_1h → metrics_1d, and their retention.

Only buckets that changed are recomputed. The sink marks the hour of every metrics_1m row
it writes in ``speed_rollup_pending`` inside its own transaction; here, per level:

1. ``DELETE … RETURNING`` takes up to ``batch`` marks (locked in key order, so it waits for
   a sink transaction that is marking the same hour and then sees its rows);
2. in a *new statement* (so READ COMMITTED sees everything committed up to now) the taken
   buckets are recomputed from the level below, completely, and upserted: counts and bytes
   summed, min/min, max/max, digests merged in SQL by the ``tdigest`` aggregate;
3. the day of every refreshed hour is marked for the day level.

All three in one transaction: a crash leaves the marks in place. Rollups are exact sums
of their minutes because every refresh replaces a bucket with the sum of *all* its rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg import sql

from speed_layer.metrics_sql import METRICS_REPLACE_ON_CONFLICT
from speed_layer.settings import SpeedSettings

log = logging.getLogger(__name__)

_LEVELS: Final = {
    # level: (target table, source table, bucket width)
    "1h": ("metrics_1h", "metrics_1m", "1 hour"),
    "1d": ("metrics_1d", "metrics_1h", "1 day"),
}

_TAKE_MARKS = """
CREATE TEMP TABLE IF NOT EXISTS speed_rollup_taken (project_id text, bucket timestamptz)
    ON COMMIT DELETE ROWS;
"""

_DELETE_MARKS = """
WITH taken AS (
    DELETE FROM speed_rollup_pending
     WHERE (level, project_id, bucket) IN (
           SELECT level, project_id, bucket FROM speed_rollup_pending
            WHERE level = %(level)s
            ORDER BY project_id, bucket
            LIMIT %(batch)s
            FOR UPDATE)
    RETURNING project_id, bucket)
INSERT INTO speed_rollup_taken SELECT project_id, bucket FROM taken"""

_REFRESH = (
    """
INSERT INTO {target} AS r (
    bucket, project_id, api_key, endpoint, method, status_class, request_count, error_count,
    server_error_count, latency_sum, latency_min, latency_max, latency_digest, bytes_in,
    bytes_out, updated_at)
SELECT t.bucket, s.project_id, s.api_key, s.endpoint, s.method, s.status_class,
       sum(s.request_count), sum(s.error_count), sum(s.server_error_count),
       sum(s.latency_sum), min(s.latency_min), max(s.latency_max), tdigest(s.latency_digest),
       sum(s.bytes_in), sum(s.bytes_out), now()
FROM speed_rollup_taken t
JOIN {source} s
  ON s.project_id = t.project_id
 AND s.bucket >= t.bucket AND s.bucket < t.bucket + {width}::interval
GROUP BY t.bucket, s.project_id, s.api_key, s.endpoint, s.method, s.status_class"""
    + METRICS_REPLACE_ON_CONFLICT
)

_MARK_DAYS = """
INSERT INTO speed_rollup_pending (level, project_id, bucket)
SELECT DISTINCT '1d', project_id, date_trunc('day', bucket) FROM speed_rollup_taken
ORDER BY 2, 3
ON CONFLICT (level, project_id, bucket) DO UPDATE SET marked_at = EXCLUDED.marked_at"""

_SET_RETENTION = """
UPDATE partman.part_config
   SET retention = %(retention)s, retention_keep_table = false
 WHERE parent_table = %(parent)s AND retention IS DISTINCT FROM %(retention)s"""


@dataclass(frozen=True, slots=True)
class RollupResult:
    """How many (project, bucket) pairs each level recomputed."""

    hours: int
    days: int


def refresh_level(conn: psycopg.Connection, level: str, batch: int = 2_000) -> int:
    """Recompute every marked bucket of ``level``; returns how many were recomputed."""
    target, source, width = _LEVELS[level]
    refresh = sql.SQL(_REFRESH).format(
        target=sql.Identifier(target), source=sql.Identifier(source), width=sql.Literal(width)
    )
    total = 0
    while True:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(_TAKE_MARKS)
            cur.execute(_DELETE_MARKS, {"level": level, "batch": batch})
            taken = cur.rowcount
            if taken <= 0:
                return total
            cur.execute(refresh)
            if level == "1h":
                cur.execute(_MARK_DAYS)
        total += taken


def apply_retention(conn: psycopg.Connection, settings: SpeedSettings) -> None:
    """Write the configured retention into pg_partman and run its maintenance for our tables."""
    wanted = {
        "public.metrics_1m": settings.retention_1m,
        "public.metrics_1h": settings.retention_1h,
        "public.metrics_1d": settings.retention_1d,
    }
    with conn.transaction():
        for parent, retention in wanted.items():
            conn.execute(_SET_RETENTION, {"parent": parent, "retention": retention})
    for parent in wanted:
        with conn.transaction():
            conn.execute("SELECT partman.run_maintenance(p_parent_table => %s)", (parent,))


def refresh_all(settings: SpeedSettings, *, retention: bool = True) -> RollupResult:
    """Hours, then days, then retention; each step commits on its own."""
    with psycopg.connect(settings.database.dsn(), autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        hours = refresh_level(conn, "1h")
        days = refresh_level(conn, "1d")
        if retention:
            apply_retention(conn, settings)
    log.info("rollups refreshed: %d hour(s), %d day(s)", hours, days)
    return RollupResult(hours=hours, days=days)
