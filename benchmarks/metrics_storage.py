"""Bytes per metrics_1m row and per event, before and after native compression.

    python -m benchmarks.metrics_storage [--days 7] [--rows-per-minute 120]

Fills a private PostgreSQL + TimescaleDB with the query benchmark's data shape (1,000
consumers x 50 endpoints, Zipf activity, geometric requests per row, 5-centroid digests;
``benchmarks.query_api.fill``) for ``--days`` ending now, then compresses every chunk the
policy would (older than 2 hours) in each of two layouts, and measures the same chunks
before and after: heap + TOAST + indexes per row and per event, and what the layout costs
elsewhere: one consumer's series read from the compressed minutes (a 90-day range: every
compressed day there is), a re-emit upserted into a compressed chunk (one row, and a
replay batch), and compressing. Layouts: 0071's (segment by project and consumer, order by
minute; the baseline) and 0076's (segment by project, order by series then minute; what
the migrations ship). The digests are measured apart (their share of the raw row, and of
the compressed batches, column by column) since they are what keeps us from the design's
10x.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import psycopg
from psycopg import sql

from benchmarks.query_api import PROJECT, command, fill, machine, private_database
from schemas.metric_tables import column_list, replace_on_conflict

RESULTS = Path(__file__).resolve().parent / "results" / "metrics_storage.json"
TARGET_RATIO = 5.0

_OLD = "show_chunks('metrics_1m', older_than => now() - INTERVAL '2 hours')"

_SIZES = """
SELECT sum(s.table_bytes), sum(s.toast_bytes), sum(s.index_bytes), sum(s.total_bytes)
FROM chunks_detailed_size('metrics_1m') s
WHERE format('%I.%I', s.chunk_schema, s.chunk_name)::regclass IN (
    SELECT show_chunks('metrics_1m', older_than => now() - INTERVAL '2 hours'))"""

_ROWS = """
SELECT count(*), sum(request_count), avg(pg_column_size(m.*)),
       avg(pg_column_size(latency_digest)), count(DISTINCT (date_trunc('hour', bucket), api_key))
FROM metrics_1m m WHERE bucket < %s"""

# each compressed chunk's internal table (same column names, compressed values)
_COMPRESSED = """
SELECT format('%I.%I', cc.schema_name, cc.table_name)
FROM _timescaledb_catalog.chunk c
JOIN _timescaledb_catalog.chunk cc ON cc.id = c.compressed_chunk_id
JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id
WHERE h.table_name = 'metrics_1m'"""


def _compressed_columns(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Bytes of each column summed over every compressed chunk (values as stored)."""
    totals: dict[str, int] = {}
    for (table,) in conn.execute(_COMPRESSED).fetchall():
        schema, name = table.split(".", 1)
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = %s ORDER BY ordinal_position",
            (schema.strip('"'), name.strip('"'))).fetchall()]
        sums = ", ".join(
            f"coalesce(sum(pg_column_size({sql.Identifier(c).as_string(conn)})), 0)"
            for c in cols)
        row = conn.execute(f"SELECT {sums} FROM {table}").fetchone()  # noqa: S608 - catalog names
        assert row is not None  # noqa: S101
        for col, size in zip(cols, row, strict=True):
            totals[col] = totals.get(col, 0) + int(size)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


# (segment by, order by): 0071's layout, the baseline, and 0076's, which the migrations
# now ship. With 1-hour chunks a consumer has a few rows per chunk, so 0071's batches are
# tiny; 0076's put a project's hour in batches of up to 1,000 rows, sorted by series.
LAYOUTS: Final = {
    "0071_project_consumer": ("project_id, api_key", "bucket"),
    "0076_project": ("project_id", "api_key, endpoint, method, status_class, bucket"),
}
SERIES_KEYS: Final = ("key-0000", "key-0003", "key-0010", "key-0031", "key-0100", "key-0316")
SERIES_ROUNDS: Final = 5
UPSERTS_SINGLE: Final = 20
UPSERT_BATCH: Final = 500

# A consumer's daily series with its p99 over 90 days, read from the minutes themselves:
# what a 1-minute per-consumer query, an alert backfill or an aggregate refresh pays.
_SERIES = """
SELECT time_bucket(INTERVAL '1 day', bucket) AS day, sum(request_count)::bigint,
       tdigest_percentile(latency_digest, 0.99)
FROM metrics_1m WHERE project_id = %s AND api_key = %s
  AND bucket >= now() - INTERVAL '90 days' GROUP BY 1 ORDER BY 1"""

# Rows of compressed chunks to re-emit (same values: a replay after recovery).
_PICK = """
SELECT {cols} FROM metrics_1m
WHERE bucket >= %s AND bucket < %s ORDER BY md5(api_key || endpoint || bucket::text) LIMIT %s"""


def _layout(conn: psycopg.Connection[Any], name: str) -> float:
    """Decompress the old chunks, set the layout, compress them again: seconds compressing."""
    segment_by, order_by = LAYOUTS[name]
    conn.execute(f"SELECT decompress_chunk(c, if_compressed => true) FROM {_OLD} c")  # noqa: S608
    conn.execute(sql.SQL("ALTER TABLE metrics_1m SET (timescaledb.compress_segmentby = {}, "
                         "timescaledb.compress_orderby = {})").format(
        sql.Literal(segment_by), sql.Literal(order_by)))
    t = time.perf_counter()
    conn.execute(f"SELECT compress_chunk(c) FROM {_OLD} c")  # noqa: S608 - constant
    seconds = time.perf_counter() - t
    conn.execute("VACUUM ANALYZE metrics_1m")
    return seconds


def _series_ms(conn: psycopg.Connection[Any]) -> dict[str, float]:
    """p50/p99 of the per-consumer 90-day series over the compressed minutes."""
    times = []
    for _ in range(SERIES_ROUNDS):
        for key in SERIES_KEYS:
            t = time.perf_counter()
            conn.execute(_SERIES, (PROJECT, key)).fetchall()
            times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2),
            "p99_ms": round(float(np.percentile(times, 99)), 2), "n": len(times)}


def _upsert_ms(conn: psycopg.Connection[Any], cutoff: datetime) -> dict[str, Any]:
    """Re-emit rows of compressed chunks through the speed layer's upsert; times and check."""
    cols = column_list()
    marks = ", ".join(["%s"] * len(cols.split(",")))
    upsert = f"INSERT INTO metrics_1m ({cols}) VALUES ({marks}) {replace_on_conflict()}"  # noqa: S608
    day_ago = cutoff - timedelta(hours=22)
    rows = conn.execute(sql.SQL(_PICK).format(cols=sql.SQL(cols)),
                        (day_ago, day_ago + timedelta(hours=3), UPSERTS_SINGLE + UPSERT_BATCH)
                        ).fetchall()
    before = conn.execute("SELECT count(*), sum(request_count) FROM metrics_1m").fetchone()
    single = []
    for row in rows[:UPSERTS_SINGLE]:
        t = time.perf_counter()
        conn.execute(upsert, row)
        single.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(upsert, rows[UPSERTS_SINGLE:])
    batch_ms = (time.perf_counter() - t) * 1000
    after = conn.execute("SELECT count(*), sum(request_count) FROM metrics_1m").fetchone()
    if before != after:  # a re-emit must replace its row, never add one
        raise RuntimeError(f"re-emits changed the table: {before} -> {after}")
    return {"single_row_p50_ms": round(float(np.percentile(single, 50)), 2),
            "single_row_max_ms": round(max(single), 2), "single_rows": len(single),
            "batch_rows": len(rows) - UPSERTS_SINGLE, "batch_ms": round(batch_ms, 1),
            "batch_ms_per_row": round(batch_ms / max(len(rows) - UPSERTS_SINGLE, 1), 3)}


def _measure(conn: psycopg.Connection[Any], name: str, rows: int, events: int, b_total: int,
             cutoff: datetime) -> dict[str, Any]:
    """One layout: sizes, per-column bytes, per-consumer read and re-emit costs."""
    seconds = _layout(conn, name)
    after = conn.execute(_SIZES).fetchone()
    assert after is not None  # noqa: S101
    columns = _compressed_columns(conn)
    total = int(after[3])
    series = _series_ms(conn)
    upserts = _upsert_ms(conn, cutoff)
    segment_by, order_by = LAYOUTS[name]
    return {"segment_by": segment_by, "order_by": order_by,
            "heap_bytes": int(after[0]), "toast_bytes": int(after[1]),
            "index_bytes": int(after[2]), "total_bytes": total,
            "bytes_per_row": round(total / rows, 1), "bytes_per_event": round(total / events, 2),
            "compression_ratio": round(b_total / total, 2),
            "compressed_digest_bytes_per_row": round(columns.get("latency_digest", 0) / rows, 1),
            "compress_seconds": round(seconds, 1),
            "consumer_series_90d_from_minutes": series, "reemit_upsert": upserts,
            "compressed_bytes_by_column": columns}


def run(database_url: str, days: int, rows_per_minute: int) -> dict[str, Any]:
    from schemas import keystore

    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        keystore.create_project(conn, PROJECT)
        t0 = time.perf_counter()
        fill(conn, now, days=days, rows_per_minute=rows_per_minute, refresh=False)
        fill_s = time.perf_counter() - t0
        cutoff_row = conn.execute(
            f"SELECT max(range_end) FROM timescaledb_information.chunks "  # noqa: S608
            f"WHERE hypertable_name = 'metrics_1m' AND format('%I.%I', chunk_schema,"
            f" chunk_name)::regclass IN (SELECT {_OLD})").fetchone()
        assert cutoff_row is not None  # noqa: S101
        cutoff = cutoff_row[0]
        counted = conn.execute(_ROWS, (cutoff,)).fetchone()
        assert counted is not None  # noqa: S101
        rows, events, segments = int(counted[0]), int(counted[1]), int(counted[4])
        row_bytes, digest_bytes = float(counted[2]), float(counted[3])
        before = conn.execute(_SIZES).fetchone()
        assert before is not None  # noqa: S101
        b_total = int(before[3])
        uncompressed = {"consumer_series_90d_from_minutes": _series_ms(conn),
                        "reemit_upsert": _upsert_ms(conn, cutoff)}
        layouts = {name: _measure(conn, name, rows, events, b_total, cutoff)
                   for name in LAYOUTS}
    shipped = layouts["0076_project"]
    columns = shipped["compressed_bytes_by_column"]
    compressed_total = sum(columns.values()) or 1
    digest_after = columns.get("latency_digest", 0)
    return {
        "benchmark": "metrics_storage",
        "command": command("benchmarks.metrics_storage"),
        "data": {"days": days, "api_keys": 1000, "endpoints": 50,
                 "rows_per_minute_drawn": rows_per_minute,
                 "rows": int(rows), "events": int(events),
                 "events_per_row": round(int(events) / max(int(rows), 1), 2),
                 "rows_per_consumer_hour": round(int(rows) / max(int(segments), 1), 1),
                 "fill_seconds": round(fill_s, 1)},
        "figures": {
            "before": {"heap_bytes": int(before[0]), "toast_bytes": int(before[1]),
                       "index_bytes": int(before[2]), "total_bytes": b_total,
                       "bytes_per_row": round(b_total / rows, 1),
                       "bytes_per_event": round(b_total / events, 2), **uncompressed},
            "layouts": layouts,
            "shipped": "0076_project",
            "compression_ratio": shipped["compression_ratio"],
            "baseline_ratio": layouts["0071_project_consumer"]["compression_ratio"],
            "digests": {
                "raw_row_bytes_avg": round(float(row_bytes), 1),
                "raw_digest_bytes_avg": round(float(digest_bytes), 1),
                "raw_digest_share": round(float(digest_bytes) / float(row_bytes), 3),
                "compressed_digest_bytes_per_row": round(digest_after / rows, 1),
                "compressed_digest_share": round(digest_after / compressed_total, 3),
                "digest_ratio": round(float(digest_bytes) * rows / max(digest_after, 1), 2),
                "ratio_without_digests": round(
                    (float(row_bytes) - float(digest_bytes)) * rows
                    / max(compressed_total - digest_after, 1), 2),
            },
        },
        "target_ratio": TARGET_RATIO,
        "machine": machine(),
        "note": "other engineers' jobs shared the 2 cores during the run (load average "
                "in machine); compare layouts within this run, not across runs",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rows-per-minute", type=int, default=120)
    args = parser.parse_args()
    load_before = machine()["load_average_1_5_15"]
    with private_database() as url:
        result = run(url, args.days, args.rows_per_minute)
    result["machine"]["load_average_at_start"] = load_before
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    f, d = result["figures"], result["data"]
    print(f"{d['rows']:,} rows, {d['events']:,} events, {d['rows_per_consumer_hour']} rows per "
          f"consumer-hour")
    print(f"{'metrics_1m':24} {'bytes':>12} {'B/row':>7} {'B/event':>8} {'ratio':>6} "
          f"{'series p50/p99 ms':>18} {'upsert 1 row ms':>16} {'batch ms/row':>13}")
    for label, x in (("uncompressed", f["before"]), *f["layouts"].items()):
        s, u = x["consumer_series_90d_from_minutes"], x["reemit_upsert"]
        print(f"{label:24} {x['total_bytes']:12,} {x['bytes_per_row']:7.1f} "
              f"{x['bytes_per_event']:8.2f} {x.get('compression_ratio', 1.0):6.2f} "
              f"{s['p50_ms']:8.1f}/{s['p99_ms']:<8.1f} {u['single_row_p50_ms']:16.2f} "
              f"{u['batch_ms_per_row']:13.3f}")
    g = f["digests"]
    print(f"shipped {f['shipped']}: ratio {f['compression_ratio']}x (target >= {TARGET_RATIO}x;"
          f" 0071's {f['baseline_ratio']}x); digests {g['raw_digest_share']:.0%} of a raw row, "
          f"{g['compressed_digest_share']:.0%} compressed ({g['digest_ratio']}x)")
    print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
