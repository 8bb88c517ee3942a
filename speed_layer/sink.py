"""Writes emissions to PostgreSQL: metrics_1m upserts and late_events.

One transaction per Bytewax output batch:

1. COPY every emitted window into a temporary staging table (CSV written by Arrow);
2. ``INSERT … SELECT … ON CONFLICT DO UPDATE`` into the ``metrics_1m`` hypertable
   (``metrics_sql``): a window's row is *replaced* by its latest full state, so
   re-emitting a window, or replaying after a crash, never adds to it; the hourly and
   daily continuous aggregates follow through TimescaleDB's invalidation log;
3. add late events to ``late_events``, but only those at or beyond the partition's offset
   in ``speed_late_offsets``, and move that offset, in the same transaction: a replay
   after a crash re-sends late events that are already counted, and they are skipped.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
import pyarrow as pa
from pyarrow import csv

from speed_layer.items import Emission, LateRows
from speed_layer.metrics_sql import (
    COPY_METRICS,
    METRIC_SOURCES,
    STAGE_METRICS,
    UPSERT_METRICS,
    UPSERT_METRICS_UNIQUE,
)

log = logging.getLogger(__name__)

_STAGE_LATE = """
CREATE TEMP TABLE IF NOT EXISTS speed_late_stage (
    topic text, kafka_partition integer, kafka_offset bigint, project_id text, api_key text,
    bucket_us bigint
) ON COMMIT DELETE ROWS"""

def keys_are_unique(emissions: Sequence[Emission]) -> bool:
    """True when at most one emission per known shard carries rows (so no key repeats)."""
    shards = [e.partition for e in emissions if e.metrics is not None]
    return all(p >= 0 for p in shards) and len(set(shards)) == len(shards)


_ADD_LATE = """
WITH fresh AS (
    SELECT s.project_id, s.api_key, s.bucket_us
    FROM speed_late_stage s
    LEFT JOIN speed_late_offsets o
           ON o.topic = s.topic AND o.kafka_partition = s.kafka_partition
    WHERE s.kafka_offset >= coalesce(o.next_offset, 0)
)
INSERT INTO late_events AS l (project_id, api_key, bucket, event_count, first_seen_at,
                              last_seen_at)
SELECT project_id, api_key, timestamptz 'epoch' + bucket_us * interval '1 microsecond',
       count(*), now(), now()
FROM fresh
GROUP BY project_id, api_key, bucket_us
ORDER BY 1, 2, 3
ON CONFLICT (project_id, api_key, bucket) DO UPDATE SET
    event_count = l.event_count + EXCLUDED.event_count,
    last_seen_at = EXCLUDED.last_seen_at"""

_MOVE_LATE_OFFSETS = """
INSERT INTO speed_late_offsets AS o (topic, kafka_partition, next_offset)
SELECT topic, kafka_partition, max(kafka_offset) + 1
FROM speed_late_stage
GROUP BY topic, kafka_partition
ON CONFLICT (topic, kafka_partition) DO UPDATE SET
    next_offset = greatest(o.next_offset, EXCLUDED.next_offset)"""


@dataclass(frozen=True, slots=True)
class WriteStats:
    """What one write did (for logs and the benchmark)."""

    metric_rows: int
    late_rows: int
    seconds: float


def metrics_csv(emissions: Sequence[Emission]) -> tuple[bytes, int]:
    """The COPY payload (CSV, columns of ``METRIC_COLUMNS``) of every emitted window.

    Built by Arrow's CSV writer in one go: no Python object per row or per value.
    """
    parts = [(seq, e.metrics) for seq, e in enumerate(emissions) if e.metrics is not None]
    if not parts:
        return b"", 0
    n = sum(len(rows) for _, rows in parts)

    def column(name: str) -> pa.Array | pa.ChunkedArray:
        chunks = [getattr(rows, name) for _, rows in parts]
        if name == "digest":  # formatted here, on the writer thread (see sketches.py)
            return pa.chunked_array([c.texts() for c in chunks], pa.string())
        if chunks[0].dtype == object:
            return pa.chunked_array([pa.array(c, pa.string()) for c in chunks], pa.string())
        return pa.array(np.concatenate(chunks))

    table = pa.table({
        "seq": pa.array(np.concatenate(
            [np.full(len(rows), seq, dtype=np.int64) for seq, rows in parts])),
        **{target: column(source) for target, source in METRIC_SOURCES},
    })
    out = io.BytesIO()
    csv.write_csv(table, out, csv.WriteOptions(include_header=False))
    return out.getvalue(), n


def _late_tuples(rows: LateRows) -> Iterable[tuple[object, ...]]:
    for offset, project, api_key, bucket in zip(
        rows.offset.tolist(), rows.project_id, rows.api_key, rows.bucket_us.tolist(), strict=True
    ):
        yield (rows.topic, rows.partition, offset, project, api_key, bucket)


class MetricsWriter:
    """Owns one PostgreSQL connection; ``write`` applies a list of emissions atomically."""

    def __init__(self, dsn: str, *, attempts: int = 5) -> None:
        self.dsn = dsn
        self.attempts = attempts
        self._conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.dsn, autocommit=True)
            conn.execute("SET TIME ZONE 'UTC'")
            # Room for a whole write's staging rows in memory (the default 8 MB spilled
            # them to temp files); set before the session's first temporary table.
            conn.execute("SET temp_buffers = '64MB'")
            conn.execute(STAGE_METRICS)
            conn.execute(_STAGE_LATE)
            conn.autocommit = False
            self._conn = conn
        return self._conn

    def write(self, emissions: Sequence[Emission]) -> WriteStats:
        """Apply ``emissions`` in one transaction, retrying on a lost connection."""
        for attempt in range(1, self.attempts + 1):
            try:
                return self._write_once(emissions)
            except psycopg.OperationalError:
                if attempt == self.attempts:
                    raise
                log.warning("PostgreSQL write failed (attempt %d), retrying", attempt,
                            exc_info=True)
                self.close()
                time.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    def _write_once(self, emissions: Sequence[Emission]) -> WriteStats:
        started = time.perf_counter()
        conn = self._connect()
        metric_rows = late_rows = 0
        with conn.transaction(), conn.cursor() as cur:
            payload, metric_rows = metrics_csv(emissions)
            if metric_rows:
                with cur.copy(COPY_METRICS) as copy:
                    copy.write(payload)
            if any(e.late is not None for e in emissions):
                with cur.copy(
                    "COPY speed_late_stage (topic, kafka_partition, kafka_offset, project_id,"
                    " api_key, bucket_us) FROM STDIN"
                ) as copy:
                    for emission in emissions:
                        if emission.late is not None:
                            late_rows += len(emission.late)
                            for row in _late_tuples(emission.late):
                                copy.write_row(row)
            if metric_rows:
                unique = keys_are_unique(emissions)
                cur.execute(UPSERT_METRICS_UNIQUE if unique else UPSERT_METRICS)
            if late_rows:
                cur.execute(_ADD_LATE)
                cur.execute(_MOVE_LATE_OFFSETS)
        return WriteStats(metric_rows, late_rows, time.perf_counter() - started)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
