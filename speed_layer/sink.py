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
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
import pyarrow as pa
from pyarrow import csv

from schemas.consumer_ops import ERRORS, EVENTS_OUT, ComponentOps, no_ops
from schemas.dead_letters import DeadLetter, count_dead_letters
from schemas.retry import call_until_done, pg_address, pg_unreachable
from speed_layer.items import LATE_ROWS_SCHEMA, Emission, digest_compression
from speed_layer.metrics_sql import (
    COPY_METRICS,
    METRIC_SOURCES,
    STAGE_METRICS,
    UPSERT_METRICS,
    UPSERT_METRICS_UNIQUE,
)
from speed_layer.sketches import digest_texts
from speed_layer.split import (
    COMPONENT,
    DATA_ERRORS,
    WAIT_ERRORS,
    emission_rows,
    first_line,
    halves,
    refused_letter,
    rows_of,
)

log = logging.getLogger(__name__)

_STAGE_LATE = """
CREATE TEMP TABLE IF NOT EXISTS speed_late_stage (
    topic text, kafka_partition integer, kafka_offset bigint, project_id text, api_key text,
    bucket_us bigint
) ON COMMIT DELETE ROWS"""

_COPY_LATE = ("COPY speed_late_stage (topic, kafka_partition, kafka_offset, project_id,"
              " api_key, bucket_us) FROM STDIN (FORMAT csv)")


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

    The emissions' record batches are joined and written by Arrow's CSV writer, digests
    printed in bulk (``sketches.digest_texts``): no Python object per row or per value.
    """
    parts: list[tuple[int, pa.RecordBatch]] = [
        (seq, e.metrics) for seq, e in enumerate(emissions)
        if e.metrics is not None and e.metrics.num_rows]
    if not parts:
        return b"", 0
    rows = pa.Table.from_batches([r.replace_schema_metadata() for _, r in parts])
    compression = digest_compression(parts[0][1])
    seq = np.repeat(np.asarray([s for s, _ in parts], np.int64),
                    [r.num_rows for _, r in parts])
    columns: dict[str, pa.Array | pa.ChunkedArray] = {"seq": pa.array(seq)}
    for target, source in METRIC_SOURCES:
        if source == "digest":
            columns[target] = pa.chunked_array([
                digest_texts(m, c, compression) for m, c in zip(
                    rows.column("digest_means").chunks, rows.column("digest_counts").chunks,
                    strict=True)], pa.string())
        else:
            columns[target] = rows.column(source)
    out = io.BytesIO()
    csv.write_csv(pa.table(columns), out, csv.WriteOptions(include_header=False))
    return out.getvalue(), len(seq)


def late_csv(emissions: Sequence[Emission]) -> tuple[bytes, int]:
    """The COPY payload of ``speed_late_stage`` (CSV written by Arrow)."""
    parts = [e.late for e in emissions if e.late is not None and len(e.late)]
    if not parts:
        return b"", 0
    tables = [pa.table({
        "topic": pa.array(np.full(len(p), p.topic, dtype=object), pa.string()),
        "kafka_partition": pa.array(np.full(len(p), p.partition, dtype=np.int32)),
        **{name: p.rows.column(name) for name in LATE_ROWS_SCHEMA.names},
    }) for p in parts]
    out = io.BytesIO()
    csv.write_csv(pa.concat_tables(tables), out, csv.WriteOptions(include_header=False))
    return out.getvalue(), sum(len(p) for p in parts)


class MetricsWriter:
    """Owns one PostgreSQL connection; ``write`` applies a list of emissions atomically.

    Two kinds of failure, two answers:

    - PostgreSQL gone (or refusing every statement): wait with capped backoff, one log
      line per attempt, readiness false, and write the same emissions once it is back.
      Nothing is lost or counted twice: the write is one transaction of full values.
    - PostgreSQL refusing the *data* (``DataError``/``IntegrityError``: text it cannot
      hold, a digest it cannot parse): retry once, then bisect the emissions and their
      rows until the refused rows are isolated; they become dead letters (with their
      series key and partition: a window row has no Kafka coordinates), the rest is
      written. Emissions keep their order, so the newest value of a window still wins.
    """

    def __init__(self, dsn: str, *, ops: ComponentOps | None = None,
                 dead_letters: Callable[[Sequence[DeadLetter]], None] | None = None,
                 topic: str = "", stop: threading.Event | None = None) -> None:
        self.dsn = dsn
        self.ops = ops or no_ops(COMPONENT)
        self.dead_letters = dead_letters
        self.topic = topic
        self.stop = stop
        self._conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
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
        """Apply ``emissions`` in one transaction; see the class for what failures do."""
        for attempt in (1, 2):
            try:
                return self._write_waiting(emissions)
            except DATA_ERRORS as exc:
                ERRORS.labels(COMPONENT, "data_refused").inc()
                log.warning("PostgreSQL refused a write of %d row(s) on its data (%s)%s",
                            rows_of(emissions), first_line(exc),
                            "; retrying once" if attempt == 1 else "; splitting it")
        refused: list[tuple[Emission, BaseException]] = []
        stats = self._bisect(list(emissions), refused)
        if refused:
            self._refuse(refused)
        return stats

    def _write_waiting(self, emissions: Sequence[Emission]) -> WriteStats:
        stats = call_until_done(
            lambda: self._write_once(emissions), transient=WAIT_ERRORS,
            describe=self._describe, log=log, stop=self.stop,
            on_failure=self._lost, on_success=lambda: self.ops.dependency_ok("postgres"))
        self.ops.success()
        EVENTS_OUT.labels(COMPONENT).inc(stats.metric_rows + stats.late_rows)
        return stats

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return pg_unreachable(self.dsn, exc)
        return (f"PostgreSQL at {pg_address(self.dsn)} refused the speed layer's write "
                f"({type(exc).__name__}: {first_line(exc)})")

    def _lost(self, exc: BaseException) -> None:
        ERRORS.labels(COMPONENT, "postgres_unavailable").inc()
        self.ops.dependency_failed("postgres")
        self.close()

    def _bisect(self, emissions: list[Emission],
                refused: list[tuple[Emission, BaseException]]) -> WriteStats:
        """Write what PostgreSQL takes, in order; collect the single rows it refuses."""
        try:
            return self._write_waiting(emissions)
        except DATA_ERRORS as exc:
            if rows_of(emissions) <= 1:
                refused.extend((e, exc) for e in emissions if emission_rows(e))
                return WriteStats(0, 0, 0.0)
        left, right = halves(emissions)
        a, b = self._bisect(left, refused), self._bisect(right, refused)
        return WriteStats(a.metric_rows + b.metric_rows, a.late_rows + b.late_rows,
                          a.seconds + b.seconds)

    def _refuse(self, refused: list[tuple[Emission, BaseException]]) -> None:
        letters = [refused_letter(e, exc, self.topic) for e, exc in refused]
        for letter in letters:
            log.error("speed layer: row refused by PostgreSQL, dead-lettered: %s (%s)",
                      letter.event_id or letter.origin, letter.reason)
        if self.dead_letters is not None:
            self.dead_letters(letters)
        else:
            count_dead_letters(letters)

    def _write_once(self, emissions: Sequence[Emission]) -> WriteStats:
        started = time.perf_counter()
        payload, metric_rows = metrics_csv(emissions)
        late_payload, late_rows = late_csv(emissions)
        conn = self._connect()
        with conn.transaction(), conn.cursor() as cur:
            if metric_rows:
                with cur.copy(COPY_METRICS) as copy:
                    copy.write(payload)
            if late_rows:
                with cur.copy(_COPY_LATE) as copy:
                    copy.write(late_payload)
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
