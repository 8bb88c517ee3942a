"""Concurrent dashboards against a real query API (issue 12 §6).

    python -m benchmarks.dashboard_load [--clients 16] [--seconds 30] [--runs 3] [--workers 2]

Fills a private PostgreSQL + TimescaleDB with a day of one project's minutes: 1,000
consumers over 50 endpoints, about 20,000 metrics_1m rows in the last hour and ~3.8 M
events in all (``benchmarks.query_api.fill``; aggregates refreshed as their policies
would, chunks older than 2 h compressed as the policy keeps them). Starts ``turnstile
query`` (uvicorn, ``--workers`` processes) on a free port and runs ``--clients``
dashboards in one asyncio process: each loads its range as the page does
(``query_api/static/dashboard.js``: historical with granularity auto, endpoints limit
50, consumers limit 10, sent together with an explicit [start, end) computed from
the clock), then loads again at once. Half the clients show the last 24 h, half the last
hour. Counted: completed calls per second and their p50/p99, per run after a warm-up;
the median over ``--runs``. One client alone is measured first (the no-contention cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from benchmarks.query_api import PROJECT, command, fill, machine, private_database

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard_load.json"
A = "api/v1/analytics/"
CALLS = ("historical", "endpoints", "consumers")
RANGES = {"24h": 86400, "1h": 3600}
WARMUP_S = 3.0
TARGETS = {"queries_per_s": 100, "p99_ms": 250}


def _params(call: str, seconds: int) -> dict[str, str | int]:
    end = datetime.now(UTC)
    rng: dict[str, str | int] = {
        "start": (end - timedelta(seconds=seconds)).isoformat(timespec="milliseconds"),
        "end": end.isoformat(timespec="milliseconds")}
    if call == "historical":
        return {**rng, "granularity": "auto"}
    return {**rng, "limit": 50 if call == "endpoints" else 10}


async def _dashboard(client: httpx.AsyncClient, range_name: str, until: float, count_from: float,
                     samples: list[tuple[str, str, float]], errors: list[str]) -> None:
    """One page reloading its range as fast as its answers come back."""
    async def one(call: str) -> None:
        t = time.perf_counter()
        try:
            r = await client.get(A + call, params=_params(call, RANGES[range_name]))
        except httpx.TransportError as exc:  # e.g. a keep-alive connection closed by uvicorn
            errors.append(f"{call} {range_name}: {exc!r}")
            return
        if r.status_code != 200:  # e.g. 503 when the pool waited 30 s: counted, not timed
            errors.append(f"{call} {range_name}: {r.status_code} {r.text[:200]}")
            return
        if t >= count_from:
            samples.append((call, range_name, time.perf_counter() - t))

    while time.perf_counter() < until:
        await asyncio.gather(*(one(c) for c in CALLS))


async def _load(base: str, secret: str, clients: int, seconds: float) -> dict[str, Any]:
    samples: list[tuple[str, str, float]] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients * len(CALLS))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {secret}"}) as client:
        start = time.perf_counter()
        count_from, until = start + WARMUP_S, start + WARMUP_S + seconds
        await asyncio.gather(*(_dashboard(client, list(RANGES)[i % len(RANGES)], until,
                                          count_from, samples, errors)
                               for i in range(clients)))
        # calls still in flight at ``until`` finish after it; count the true span
        span = max(time.perf_counter(), until) - count_from
    ms = np.array([s[2] for s in samples]) * 1000
    by_call = {}
    for call in CALLS:
        for range_name in RANGES:
            x = np.array([s[2] for s in samples if s[0] == call and s[1] == range_name]) * 1000
            if len(x):
                by_call[f"{call}_{range_name}"] = {
                    "n": len(x), "p50_ms": round(float(np.percentile(x, 50)), 1),
                    "p99_ms": round(float(np.percentile(x, 99)), 1)}
    return {"queries": len(ms), "errors": len(errors), "first_errors": errors[:3],
            "seconds": round(span, 2),
            "queries_per_s": round(len(ms) / span, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "by_call": by_call}


def _explain(url: str) -> dict[str, list[dict[str, Any]]]:
    """EXPLAIN ANALYZE of each statement the dashboard's calls run, as the routes build them.

    Wraps the repository's one fetch helper so the SQL is exactly the API's; the plans say
    which aggregate and how many chunks/digests each call reads, and where its time goes.
    """
    from psycopg import sql

    from query_api import repository as repo
    from query_api.params import Rollup, TimeRange, align, auto_step, rollup_for_step

    captured: list[dict[str, Any]] = []
    original = repo._fetch

    def explained(conn: Any, query: Any, params: Any) -> list[dict[str, Any]]:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + query, params)
            lines = [r[0] for r in cur.fetchall()]
        timing = {ln.split(":")[0].strip(): float(ln.split(":")[1].split()[0])
                  for ln in lines if ln.startswith(("Planning Time", "Execution Time"))}
        captured.append({"planning_ms": timing.get("Planning Time"),
                         "execution_ms": timing.get("Execution Time"), "plan": lines[:60]})
        return original(conn, query, params)

    out: dict[str, list[dict[str, Any]]] = {}
    repo._fetch = explained
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for range_name, seconds in RANGES.items():
                end = datetime.now(UTC)
                rng = TimeRange(end - timedelta(seconds=seconds), end)
                step = auto_step(rng)
                table = rollup_for_step(step) or Rollup.MINUTE
                aligned = align(rng, table.seconds)
                repo.series(conn, table, PROJECT, align(rng, step), step)
                repo.totals(conn, table, PROJECT, align(rng, step))
                out[f"historical_{range_name}"] = captured[:]
                captured.clear()
                repo.breakdown(conn, table, PROJECT, aligned, ["method", "endpoint"], limit=50)
                out[f"endpoints_{range_name}"] = captured[:]
                captured.clear()
                repo.breakdown(conn, table, PROJECT, aligned, ["api_key"], limit=10)
                out[f"consumers_{range_name}"] = captured[:]
                captured.clear()
                # every consumer's digests merged (what ranking before the cut costs)
                repo.breakdown(conn, table, PROJECT, aligned, ["api_key"], limit=None)
                out[f"consumers_{range_name}_all_groups"] = captured[:]
                captured.clear()
    finally:
        repo._fetch = original
    return out


def _start_api(url: str, port: int, workers: int, state: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TURNSTILE_DATABASE_URL": url, "TURNSTILE_STATE_DIR": str(state),
           "TURNSTILE_LAKE_URI": str(state / "lake")}
    (state / "lake").mkdir(parents=True, exist_ok=True)
    cli = Path(sys.executable).with_name("turnstile")
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [str(cli), "query", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"query API exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("query API not ready within 60 s")


def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from schemas import keystore
    from schemas.keys import KeyKind
    from turnstile_cli.stack import free_ports

    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        keystore.create_project(conn, PROJECT)
        secret = keystore.create_key(conn, PROJECT, KeyKind.READ).secret
        t0 = time.perf_counter()
        fill(conn, now, days=1, rows_per_minute=args.rows_per_minute, count_p=args.count_p,
             compress=True)
        fill_s = time.perf_counter() - t0
        row = conn.execute(
            "SELECT count(*), sum(request_count), count(*) FILTER (WHERE bucket >= %s),"
            " count(DISTINCT api_key) FROM metrics_1m",
            (now - timedelta(hours=1),)).fetchone()
        assert row is not None  # noqa: S101
        rows, events, last_hour, consumers = (int(x) for x in row)
    port = free_ports(1)[0]
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as state:
        proc = _start_api(url, port, args.workers, Path(state))
        try:
            base = f"http://127.0.0.1:{port}/"
            single = asyncio.run(_load(base, secret, 1, min(args.seconds, 10.0)))
            runs = []
            for i in range(args.runs):
                r = asyncio.run(_load(base, secret, args.clients, args.seconds))
                r["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                runs.append(r)
                print(f"  run {i + 1}: {r['queries_per_s']} q/s, p50 {r['p50_ms']} ms, "
                      f"p99 {r['p99_ms']} ms", file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    explain = _explain(url) if args.explain else {}
    figures = {k: statistics.median(r[k] for r in runs)
               for k in ("queries_per_s", "p50_ms", "p99_ms")}
    return {
        "benchmark": "dashboard_load",
        "command": command("benchmarks.dashboard_load"),
        "data": {"hours": 24, "api_keys": consumers, "endpoints": 50, "rows": rows,
                 "rows_last_hour": last_hour, "events": events,
                 "rows_per_minute_drawn": args.rows_per_minute,
                 "fill_seconds": round(fill_s, 1)},
        "load": {"clients": args.clients, "seconds_per_run": args.seconds, "runs": args.runs,
                 "warmup_s": WARMUP_S, "api_workers": args.workers, "calls": list(CALLS),
                 "ranges": list(RANGES), "client": "one asyncio process (httpx), same machine"},
        "figures": figures,
        "single_client": single,
        "explain_analyze": explain,
        "runs": runs,
        "targets": TARGETS,
        "before_project_aggregates": {"queries_per_s": 10, "p50_ms": 1500, "p99_ms": 2800,
                                      "source": "issue 12 §6"},
        "machine": machine(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows-per-minute", type=int, default=420)
    parser.add_argument("--count-p", type=float, default=0.125)
    parser.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True,
                        help="EXPLAIN ANALYZE each call's SQL after the runs")
    args = parser.parse_args()
    load_before = machine()["load_average_1_5_15"]
    with private_database() as url:
        result = run(url, args)
    result["machine"]["load_average_at_start"] = load_before
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    d, f = result["data"], result["figures"]
    print(f"{d['events']:,} events, {d['rows']:,} rows ({d['rows_last_hour']:,} in the last "
          f"hour); {args.clients} clients x {args.runs} runs of {args.seconds:g} s")
    print(f"{'':22} {'n':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for name, x in result["runs"][len(result["runs"]) // 2]["by_call"].items():
        print(f"{name:22} {x['n']:7} {x['p50_ms']:8.1f} {x['p99_ms']:8.1f}")
    s = result["single_client"]
    print(f"one client alone: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms")
    for name, stmts in result["explain_analyze"].items():
        print(f"  EXPLAIN {name}: " + ", ".join(
            f"plan {x['planning_ms']} ms + run {x['execution_ms']} ms" for x in stmts))
    print(f"median: {f['queries_per_s']} q/s (target >= {TARGETS['queries_per_s']}), "
          f"p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms (target < {TARGETS['p99_ms']})")
    print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
