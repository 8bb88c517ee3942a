"""Bytes per metrics_1m row and per event, before and after native compression.

    python -m benchmarks.metrics_storage [--days 7] [--rows-per-minute 120]

Fills a private PostgreSQL + TimescaleDB with the query benchmark's data shape (1,000
consumers x 50 endpoints, Zipf activity, geometric requests per row, 5-centroid digests;
``benchmarks.query_api.fill``) for ``--days`` ending now, then compresses every chunk the
policy would (older than 2 hours; segment by project and consumer, ordered by minute) and
measures the same chunks before and after: heap + TOAST + indexes per row and per event.
The digests are measured apart (their share of the raw row, and of the compressed
batches, column by column) since they are what keeps us from the design's 10x. Then the
same chunks are re-compressed segmented by project alone, to show what limits the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.query_api import PROJECT, command, fill, machine, private_database

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


# The migration's layout segments by (project_id, api_key): with 1-hour chunks a consumer
# has a few rows per chunk, so batches are tiny. This one puts a project's hour in batches
# of up to 1,000 rows, sorted by series then minute (measured apart, not what we ship).
_ALT_SEGMENT_BY = "project_id"
_ALT_ORDER_BY = "api_key, endpoint, method, status_class, bucket"


def _alternative(conn: psycopg.Connection[Any], rows: int, events: int,
                 b_total: int) -> dict[str, Any]:
    """Decompress, re-compress the same chunks segmented by project alone, measure again."""
    conn.execute(f"SELECT decompress_chunk(c) FROM {_OLD} c")  # noqa: S608 - constant
    conn.execute(
        "ALTER TABLE metrics_1m SET (timescaledb.compress_segmentby = '" + _ALT_SEGMENT_BY
        + "', timescaledb.compress_orderby = '" + _ALT_ORDER_BY + "')")
    t = time.perf_counter()
    conn.execute(f"SELECT compress_chunk(c) FROM {_OLD} c")  # noqa: S608 - constant
    seconds = time.perf_counter() - t
    conn.execute("VACUUM ANALYZE metrics_1m")
    after = conn.execute(_SIZES).fetchone()
    assert after is not None  # noqa: S101
    columns = _compressed_columns(conn)
    total = int(after[3])
    return {"segment_by": _ALT_SEGMENT_BY, "order_by": _ALT_ORDER_BY,
            "total_bytes": total, "bytes_per_row": round(total / rows, 1),
            "bytes_per_event": round(total / events, 2),
            "compression_ratio": round(b_total / total, 2),
            "compressed_digest_bytes_per_row": round(columns.get("latency_digest", 0) / rows, 1),
            "compress_seconds": round(seconds, 1)}


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
        t1 = time.perf_counter()
        chunks = conn.execute(f"SELECT compress_chunk(c) FROM {_OLD} c").fetchall()  # noqa: S608
        compress_s = time.perf_counter() - t1
        conn.execute("VACUUM ANALYZE metrics_1m")
        after = conn.execute(_SIZES).fetchone()
        assert after is not None  # noqa: S101
        stats = conn.execute(
            "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes)"
            " FROM chunk_compression_stats('metrics_1m')").fetchone()
        assert stats is not None  # noqa: S101
        columns = _compressed_columns(conn)
        alternative = _alternative(conn, rows, events, b_total=int(before[3]))
    b_total, a_total = int(before[3]), int(after[3])
    compressed_total = sum(columns.values()) or 1
    digest_after = columns.get("latency_digest", 0)
    return {
        "benchmark": "metrics_storage",
        "command": command("benchmarks.metrics_storage"),
        "data": {"days": days, "api_keys": 1000, "endpoints": 50,
                 "rows_per_minute_drawn": rows_per_minute, "compressed_chunks": len(chunks),
                 "rows": int(rows), "events": int(events),
                 "events_per_row": round(int(events) / max(int(rows), 1), 2),
                 "rows_per_segment_batch": round(int(rows) / max(int(segments), 1), 1),
                 "fill_seconds": round(fill_s, 1), "compress_seconds": round(compress_s, 1)},
        "figures": {
            "before": {"heap_bytes": int(before[0]), "toast_bytes": int(before[1]),
                       "index_bytes": int(before[2]), "total_bytes": b_total,
                       "bytes_per_row": round(b_total / rows, 1),
                       "bytes_per_event": round(b_total / events, 2)},
            "after": {"heap_bytes": int(after[0]), "toast_bytes": int(after[1]),
                      "index_bytes": int(after[2]), "total_bytes": a_total,
                      "bytes_per_row": round(a_total / rows, 1),
                      "bytes_per_event": round(a_total / events, 2)},
            "compression_ratio": round(b_total / a_total, 2),
            "timescaledb_stats_ratio": round(int(stats[0]) / int(stats[1]), 2),
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
            "compressed_bytes_by_column": columns,
            "alternative_segment_by_project": alternative,
        },
        "target_ratio": TARGET_RATIO,
        "machine": machine(),
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
    print(f"{'metrics_1m':12} {'bytes':>14} {'per row':>9} {'per event':>10}")
    for label in ("before", "after"):
        x = f[label]
        print(f"{label:12} {x['total_bytes']:14,} {x['bytes_per_row']:9.1f} "
              f"{x['bytes_per_event']:10.2f}")
    g = f["digests"]
    print(f"ratio {f['compression_ratio']}x (target >= {TARGET_RATIO}x); "
          f"{d['rows']:,} rows, {d['events']:,} events, {d['rows_per_segment_batch']} rows/batch")
    print(f"digests: {g['raw_digest_share']:.0%} of a raw row, "
          f"{g['compressed_digest_share']:.0%} compressed ({g['digest_ratio']}x); "
          f"the rest compresses {g['ratio_without_digests']}x")
    alt = f["alternative_segment_by_project"]
    print(f"segmented by project alone (order {alt['order_by']}): {alt['bytes_per_row']} B/row,"
          f" {alt['bytes_per_event']} B/event, ratio {alt['compression_ratio']}x")
    print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
