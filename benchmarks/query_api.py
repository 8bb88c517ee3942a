"""Query API latency on a month of minute data: ``python -m benchmarks.query_api``.

Fills a private PostgreSQL (started in a temp folder, or $TURNSTILE_DATABASE_URL) with 30
days of metrics_1m ending now for 1,000 consumers x 50 endpoints. Sparsity is realistic:
consumer and endpoint activity follow Zipf laws, so each minute holds ROWS_PER_MINUTE
(consumer, endpoint, status class) series, not 50,000. metrics_1h and metrics_1d (and
the project-wide aggregates) are continuous aggregates of it, refreshed after the fill.
Then each query is run through the real app (TestClient: auth, SQL, JSON) with varied
consumers/endpoints; p50/p99 per query, median over ROUNDS rounds. Baselines, same run:
a consumer's month computed from metrics_1m instead of the rollups, and the month's top
endpoints merged from every consumer's hours (metrics_1h) instead of the per-endpoint
aggregates. Chunks older than 2 h are compressed first, as the policy keeps them
(BENCH_COMPRESS=0 skips it). BENCH_DAYS / BENCH_ROWS_PER_MINUTE / BENCH_RUNS shrink it
(recorded in the results).
"""

from __future__ import annotations

import io
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString

import numpy as np
import psycopg

from schemas.lake import LakeSettings
from schemas.metric_policies import refresh_aggregates

KEYS, ENDPOINTS = 1000, 50
DAYS = int(os.environ.get("BENCH_DAYS", "30"))
ROWS_PER_MINUTE = int(os.environ.get("BENCH_ROWS_PER_MINUTE", "120"))
COMPRESS = os.environ.get("BENCH_COMPRESS", "1") == "1"
ROUNDS, RUNS = 3, int(os.environ.get("BENCH_RUNS", "40"))
PROJECT = "bench"
RESULTS = Path(__file__).resolve().parent / "results" / "query_api.json"


def _digests(rng: np.random.Generator) -> dict[int, list[str]]:
    """A few digest texts per request count (counts sum to N, centroids sorted)."""
    out: dict[int, list[str]] = {}
    for n in range(1, 201):
        variants = []
        for _ in range(4):
            k = min(n, 5)
            counts = np.full(k, n // k)
            counts[: n % k] += 1
            means = np.sort(rng.lognormal(3.5, 0.6, k))
            cents = " ".join(f"({m:.3f}, {c})" for m, c in zip(means, counts, strict=True))
            variants.append(f"flags 1 count {n} compression 100 centroids {k} {cents}")
        out[n] = variants
    return out


def fill(conn: psycopg.Connection, now: datetime, *, days: int = DAYS,
         rows_per_minute: int = ROWS_PER_MINUTE, count_p: float = 0.15,
         refresh: bool = True, compress: bool = False) -> int:
    """COPY ``days`` of Zipf-shaped minutes ending at ``now``; returns the rows written.

    ``count_p`` is the geometric law of requests per row (mean 1/p, capped at 200);
    ``refresh`` materializes the continuous aggregates over the filled range; ``compress``
    then compresses the chunks the policy would have (older than 2 hours), so queries
    meet the steady state rather than whatever the policy job reached during the run.
    """
    rng = np.random.default_rng(7)
    digests = _digests(rng)
    key_w = 1 / np.arange(1, KEYS + 1) ** 1.1
    ep_w = 1 / np.arange(1, ENDPOINTS + 1) ** 1.0
    key_w, ep_w = key_w / key_w.sum(), ep_w / ep_w.sum()
    methods = ["GET", "POST", "PUT", "DELETE"]
    ep_method = [methods[i % 4] if i % 3 else "GET" for i in range(ENDPOINTS)]
    start = (now - timedelta(days=days)).replace(second=0, microsecond=0)
    minutes = days * 1440 + int((now - start - timedelta(days=days)).total_seconds() // 60) + 1
    total = 0
    chunk = 1440
    for first in range(0, minutes, chunk):
        n_min = min(chunk, minutes - first)
        n = n_min * rows_per_minute
        minute = np.repeat(np.arange(first, first + n_min), rows_per_minute)
        keys = rng.choice(KEYS, n, p=key_w)
        eps = rng.choice(ENDPOINTS, n, p=ep_w)
        cls = rng.choice([2, 3, 4, 5], n, p=[0.93, 0.02, 0.04, 0.01])
        # one row per series and minute: drop repeated draws
        packed = ((minute.astype(np.int64) * KEYS + keys) * ENDPOINTS + eps) * 8 + cls
        _, idx = np.unique(packed, return_index=True)
        minute, keys, eps, cls = minute[idx], keys[idx], eps[idx], cls[idx]
        count = np.minimum(rng.geometric(count_p, len(idx)), 200)
        variant = rng.integers(0, 4, len(idx))
        buf = io.StringIO()
        for m, k, e, c, r, v in zip(minute.tolist(), keys.tolist(), eps.tolist(), cls.tolist(),
                                    count.tolist(), variant.tolist(), strict=True):
            ts = (start + timedelta(minutes=m)).isoformat()
            err = r if c >= 4 else 0
            buf.write(f"{ts}\t{PROJECT}\tkey-{k:04d}\t/v1/resource{e:02d}/{{id}}\t{ep_method[e]}"
                      f"\t{c}\t{r}\t{err}\t{r if c == 5 else 0}\t{r * 35.0}\t1.0\t300.0\t"
                      f"{digests[r][v]}\t{r * 200}\t{r * 2000}\n")
        with conn.cursor() as cur, cur.copy(
            "COPY metrics_1m (bucket, project_id, api_key, endpoint, method, status_class, "
            "request_count, error_count, server_error_count, latency_sum, latency_min, "
            "latency_max, latency_digest, bytes_in, bytes_out) FROM STDIN") as copy:
            copy.write(buf.getvalue())
        total += len(idx)
        print(f"  day {first // 1440 + 1}/{days + 1}: {total:,} rows", file=sys.stderr)
    if refresh:
        # the continuous aggregates (and the project-wide ones) materialize the range, as
        # their policies would have while it was written
        t = time.perf_counter()
        refresh_aggregates(conn, start - timedelta(days=1))
        print(f"  aggregates refreshed in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if compress:
        t = time.perf_counter()
        n = len(conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks("
            "'metrics_1m', older_than => now() - INTERVAL '2 hours') c").fetchall())
        print(f"  {n} chunks compressed in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    conn.execute("VACUUM ANALYZE")
    return total


def machine() -> dict[str, Any]:
    """The shared machine as it was during the run: cores, memory, load average."""
    return {"cores": os.cpu_count(), "memory_gib": round(
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def command(module: str) -> str:
    """The exact command, with the BENCH_* variables that changed its size."""
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_"))
    return f"{env + ' ' if env else ''}python -m {module} {' '.join(sys.argv[1:])}".strip()


@contextmanager
def private_database() -> Iterator[str]:
    """A migrated database: $TURNSTILE_DATABASE_URL, or a PostgreSQL in a temp folder."""
    from schemas.migrate import migrate
    from turnstile_cli.stack import PostgresServer, free_ports

    external = os.environ.get("TURNSTILE_DATABASE_URL")
    server, root = None, None
    if external:
        url = external
    else:
        root = Path(tempfile.mkdtemp(prefix="turnstile-bench-"))
        root.chmod(0o755)
        server = PostgresServer(root, free_ports(1)[0])
        server.start()
        url = server.database_url
    try:
        migrate(url)
        yield url
    finally:
        if server is not None:
            server.stop()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.array(samples) * 1000
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def run(database_url: str) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from query_api.app import create_app
    from query_api.settings import QuerySettings
    from schemas import keystore
    from schemas.keys import KeyKind
    from schemas.settings import DatabaseSettings

    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        keystore.create_project(conn, PROJECT)
        secret = keystore.create_key(conn, PROJECT, KeyKind.READ).secret
        t0 = time.perf_counter()
        rows = fill(conn, now, compress=COMPRESS)
        fill_s = time.perf_counter() - t0
        sizes = {t: conn.execute("SELECT count(*) FROM " + t).fetchone()[0]  # noqa: S608
                 for t in ("metrics_1m", "metrics_1h", "metrics_1d")}
    lake = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    app = create_app(QuerySettings(database=DatabaseSettings(url=database_url),
                                   lake=LakeSettings(uri=str(lake))))
    headers = {"Authorization": f"Bearer {secret}"}
    rnd = random.Random(1)
    A = "/api/v1/analytics"
    queries = {
        "realtime_5m": lambda: (f"{A}/realtime", {"window": "5m"}),
        "endpoint_series_24h": lambda: (f"{A}/historical", {
            "start": "now-24h", "endpoint": f"/v1/resource{rnd.randrange(ENDPOINTS):02d}/{{id}}"}),
        "endpoint_series_24h_1m": lambda: (f"{A}/historical", {
            "start": "now-24h", "granularity": "1m",
            "endpoint": f"/v1/resource{rnd.randrange(ENDPOINTS):02d}/{{id}}"}),
        "consumer_series_90d": lambda: (f"{A}/historical", {
            "start": "now-90d", "api_key": f"key-{rnd.randrange(KEYS):04d}"}),
        "top_endpoints_30d": lambda: (f"{A}/endpoints", {"start": "now-30d", "limit": 50}),
        "baseline_consumer_series_30d_from_1m": lambda: ("", {}),
        "baseline_top_endpoints_30d_from_1h": lambda: ("", {}),
    }
    baselines: dict[str, LiteralString] = {
        # a consumer's month from the minutes, not the rollups
        "baseline_consumer_series_30d_from_1m": (
            "SELECT date_bin('1 day', bucket, '1970-01-01'), sum(request_count),"
            " tdigest_percentile(latency_digest, ARRAY[.5,.95,.99]) "
            "FROM metrics_1m WHERE project_id = %(p)s AND bucket >= %(start)s "
            "AND api_key = %(key)s GROUP BY 1"),
        # top endpoints as before the project-wide aggregates: every consumer's hours merged
        "baseline_top_endpoints_30d_from_1h": (
            "SELECT endpoint, method, sum(request_count),"
            " tdigest_percentile(latency_digest, ARRAY[.5,.95,.99]) "
            "FROM metrics_1h WHERE project_id = %(p)s AND bucket >= %(start)s "
            "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 50"),
    }
    rounds: dict[str, list[tuple[float, float]]] = {q: [] for q in queries}
    with TestClient(app) as client, psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(ROUNDS):
            for name, make in queries.items():
                samples = []
                for _ in range(RUNS if not name.startswith("baseline") else 5):
                    path, params = make()
                    t = time.perf_counter()
                    if name in baselines:
                        key = f"key-{rnd.randrange(KEYS):04d}"
                        conn.execute(baselines[name],
                                     {"p": PROJECT, "start": now - timedelta(days=30),
                                      "key": key}).fetchall()
                    else:
                        r = client.get(path, params=params, headers=headers)
                        if r.status_code != 200:
                            raise RuntimeError(f"{name}: {r.status_code} {r.text}")
                    samples.append(time.perf_counter() - t)
                rounds[name].append(percentiles(samples))
    shutil.rmtree(lake, ignore_errors=True)
    figures: dict[str, Any] = {name: {"p50_ms": round(statistics.median(p[0] for p in r), 2),
                      "p99_ms": round(statistics.median(p[1] for p in r), 2)}
               for name, r in rounds.items()}
    figures["ratio_vs_baseline_consumer_series"] = round(
        figures["baseline_consumer_series_30d_from_1m"]["p50_ms"]
        / figures["consumer_series_90d"]["p50_ms"], 1)
    figures["ratio_vs_baseline_top_endpoints"] = round(
        figures["baseline_top_endpoints_30d_from_1h"]["p50_ms"]
        / figures["top_endpoints_30d"]["p50_ms"], 1)
    return {
        "benchmark": "query_api",
        "command": command("benchmarks.query_api"),
        "storage": "TimescaleDB: metrics_1m hypertable, continuous aggregates (tdigest merges)",
        "data": {"days": DAYS, "api_keys": KEYS, "endpoints": ENDPOINTS,
                 "rows_per_minute_drawn": ROWS_PER_MINUTE, "rows": sizes,
                 "metrics_1m_compressed_older_than_2h": COMPRESS,
                 "fill_seconds": round(fill_s, 1), "rows_copied": rows},
        "rounds": ROUNDS, "runs_per_round": RUNS, "runs_per_round_baselines": 5,
        "figures": figures,
        "targets": {"realtime_5m_p99_ms": 50, "consumer_series_90d_p99_ms": 200,
                    "top_endpoints_30d_p50_ms": 300},
        "before_timescaledb": {"top_endpoints_30d_p50_ms": 1828.28,
                               "realtime_5m_p99_ms": 25.46, "consumer_series_90d_p99_ms": 36.45,
                               "measured_at": "2026-11-23T18:19:52+00:00"},
        "machine": machine(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    load_before = machine()["load_average_1_5_15"]
    with private_database() as url:
        result = run(url)
    result["machine"]["load_average_at_start"] = load_before
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'query':42} {'p50 ms':>9} {'p99 ms':>9}")
    for name, f in result["figures"].items():
        if isinstance(f, dict):
            print(f"{name:42} {f['p50_ms']:9.2f} {f['p99_ms']:9.2f}")
    print(f"rows: {result['data']['rows']}, fill {result['data']['fill_seconds']} s")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
