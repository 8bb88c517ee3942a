"""Billing job wall time for one day of 10,000,000 events (1,000 api keys, 200 endpoints).

The day is generated directly as lake Parquet (the lake writer's schema and layout) with
numpy/pyarrow, 1 % of events duplicated at other Kafka offsets. Measured: the billing
computation (dedupe, tiers, per-key figures: ``register_day`` + ``compute_usage``) and, as
the baseline in the same run, DuckDB's plain ``count(*) GROUP BY project_id, api_key``
scan of the same files (the floor any billing query sits on). Medians of several runs; the
1-minute load average at start and end is recorded because the machine is shared.

    python -m benchmarks.billing [--events N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

from batch_layer.billing import TierRule, compute_usage, connect, register_day
from batch_layer.lake import LAKE_ARROW_SCHEMA, open_lake, partition_dir, write_parquet_atomic
from batch_layer.settings import BatchSettings
from schemas.lake import LakeSettings

DAY = date(2026, 11, 20)
DAY_US = 1_795_132_800_000_000  # 2026-11-20T00:00:00Z
RESULTS = Path(__file__).resolve().parent / "results" / "billing.json"


def fixed_strings(chars: np.ndarray) -> pa.Array:
    """(n, w) ASCII bytes → a StringArray without a Python object per row."""
    n, width = chars.shape
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * width).tobytes())
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(np.ascontiguousarray(chars)))


def generate(root: Path, n: int, keys: int, endpoints: int, projects: int, seed: int = 1
             ) -> tuple[int, int]:
    """Write the day; returns (rows written, duplicate copies)."""
    rng = np.random.default_rng(seed)
    dup = n // 100
    uniq = n - dup
    hexd = np.frombuffer(b"0123456789abcdef", np.uint8)
    # rows beyond ``uniq`` are resent copies of random earlier events
    idx = np.concatenate([np.arange(uniq), rng.integers(0, uniq, dup)])
    ids = hexd[rng.integers(0, 16, (uniq, 32), dtype=np.uint8)][idx]
    key_i = rng.integers(0, keys, uniq)[idx]
    ep_i = rng.integers(0, endpoints, uniq)[idx]
    ts = (DAY_US + rng.integers(0, 86_400_000_000, uniq))[idx]
    status = rng.choice(np.array([200, 201, 204, 400, 404, 500], np.int16), uniq,
                        p=[.85, .05, .03, .03, .03, .01])[idx]
    api_keys = np.array([f"consumer-{i:05d}" for i in range(keys)], dtype=object)
    eps = np.array([f"/v{i % 3 + 1}/resource{i}/{{id}}" for i in range(endpoints)], dtype=object)
    project_names = [f"project-{i}" for i in range(projects)]
    proj_i = key_i % projects
    offsets = np.arange(n, dtype=np.int64)
    lake = open_lake(BatchSettings(lake=LakeSettings(uri=str(root))))
    written = 0
    for p, project in enumerate(project_names):
        rows = np.flatnonzero(proj_i == p)
        for chunk_no, chunk in enumerate(np.array_split(rows, 5)):
            m = len(chunk)
            endpoint = pa.array(eps[ep_i[chunk]], pa.string())
            table = pa.table({
                "event_id": fixed_strings(ids[chunk]),
                "project_id": pa.array(np.full(m, project, dtype=object), pa.string()),
                "timestamp": pa.array(ts[chunk], pa.timestamp("us", tz="UTC")),
                "received_at": pa.array(ts[chunk] + 500_000, pa.timestamp("us", tz="UTC")),
                "method": pa.array(np.where(ep_i[chunk] % 4 == 0, "POST", "GET").astype(object),
                                   pa.string()),
                "path": endpoint,
                "endpoint": endpoint,
                "status_code": pa.array(status[chunk], pa.int16()),
                "latency_ms": pa.array(rng.lognormal(3, 1, m)),
                "request_bytes": pa.array(rng.integers(0, 4096, m)),
                "response_bytes": pa.array(rng.integers(0, 65536, m)),
                "api_key": pa.array(api_keys[key_i[chunk]], pa.string()),
                "ip": pa.nulls(m, pa.string()),
                "user_agent": pa.nulls(m, pa.string()),
                "country": pa.nulls(m, pa.string()),
                "function": pa.nulls(m, pa.string()),
                "tags": pa.nulls(m, pa.map_(pa.string(), pa.string())),
                "kafka_partition": pa.array((key_i[chunk] * 7919) % 12, pa.int32()),
                "kafka_offset": pa.array(offsets[chunk]),
                "batch_id": pa.array((offsets[chunk] // 1000).astype(str).astype(object),
                                     pa.string()),
                "batch_index": pa.array(offsets[chunk] % 1000, pa.int32()),
            }).cast(LAKE_ARROW_SCHEMA)
            path = root / partition_dir(DAY, project) / f"part-{chunk_no:04d}-{0:020d}.parquet"
            write_parquet_atomic(lake, str(path), table, 3)
            written += m
    return written, dup


def tiers(projects: int) -> dict[str, list[TierRule]]:
    rules = [TierRule("/v1/*", "legacy"), TierRule("/v3/resource1*", "premium"),
             TierRule("/v3/*", "standard")]
    return {f"project-{i}": rules for i in range(projects)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--projects", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="turnstile-bench-billing-"))
    try:
        t0 = time.perf_counter()
        rows, dups = generate(root, args.events, args.keys, args.endpoints, args.projects)
        gen_s = time.perf_counter() - t0
        lake = open_lake(BatchSettings(lake=LakeSettings(uri=str(root))))
        disk = sum(f.stat().st_size for f in root.rglob("*.parquet"))
        billing_s, baseline_s = [], []
        total = removed = 0
        for _ in range(args.runs):
            con = connect(args.threads, "8GB")
            t = time.perf_counter()
            register_day(con, lake, DAY)
            con.execute("SELECT project_id, api_key, count(*) FROM events GROUP BY ALL").fetchall()
            baseline_s.append(time.perf_counter() - t)
            con.close()
            con = connect(args.threads, "8GB")
            t = time.perf_counter()
            register_day(con, lake, DAY)
            usage = compute_usage(con, DAY, tiers(args.projects), "default")
            billing_s.append(time.perf_counter() - t)
            con.close()
            total = sum(u.total_requests for u in usage)
            removed = sum(u.duplicates_removed for u in usage)
        if total != rows - dups or removed != dups:
            raise SystemExit(f"wrong result: {total=} {removed=} {rows=} {dups=}")
        result = {
            "benchmark": "billing",
            "command": "python -m benchmarks.billing " + " ".join(sys.argv[1:]),
            "machine": {"cores": os.cpu_count(), "memory_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                "python": platform.python_version(),
                "load_avg_1m_start": round(load_start, 2),
                "load_avg_1m_end": round(os.getloadavg()[0], 2)},
            "events": rows, "duplicates": dups, "api_keys": args.keys,
            "endpoints": args.endpoints, "projects": args.projects, "runs": args.runs,
            "duckdb_threads": args.threads,
            "billing_seconds": round(statistics.median(billing_s), 3),
            "baseline_count_group_by_seconds": round(statistics.median(baseline_s), 3),
            "ratio_vs_baseline": round(statistics.median(billing_s)
                                       / statistics.median(baseline_s), 1),
            "target_seconds": 5.0,
            "parquet_bytes_per_event": round(disk / rows, 2),
            "generate_seconds": round(gen_s, 1),
            "all_billing_seconds": [round(x, 3) for x in billing_s],
            "all_baseline_seconds": [round(x, 3) for x in baseline_s],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'figure':<36}{'value':>12}")
    for name in ("events", "duplicates", "billing_seconds", "baseline_count_group_by_seconds",
                 "ratio_vs_baseline", "target_seconds", "parquet_bytes_per_event"):
        print(f"{name:<36}{result[name]:>12}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
