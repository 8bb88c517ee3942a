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

Where the time goes: each run reads the CPU seconds of the API's processes, of every
PostgreSQL process, of this load client and of the whole machine (``/proc``), so the CPU
cost of one call is known per component and what the rest of the machine took is visible
(2 cores shared with other work). Freshness: after the runs, one minute in the open hour
and one in a materialized hour are re-emitted (+1,000 requests) and every hourly/daily
level is polled until it shows them: the open buckets at once (real-time aggregation),
the materialized ones only after their refresh policy (run here as its job would, timed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
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
                     samples: list[tuple[str, str, float]], errors: list[str],
                     done: list[int]) -> None:
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
        done[0] += 1  # every answered call, warm-up included (for CPU per call)
        if t >= count_from:
            samples.append((call, range_name, time.perf_counter() - t))

    while time.perf_counter() < until:
        await asyncio.gather(*(one(c) for c in CALLS))


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from "state" on


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (by parent pid)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parents.setdefault(int(st[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (utime, stime)."""
    total = 0
    for pid in pids:
        if (st := _stat(pid)) is not None:
            total += int(st[11]) + int(st[12])
    return total / _TICK


def _machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine (every core, every process)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


class CpuMeter:
    """CPU seconds per component over one run: API, PostgreSQL, this client, the rest."""

    def __init__(self, api_pid: int, postmaster_pid: int) -> None:
        self.api_pid, self.postmaster_pid = api_pid, postmaster_pid

    def snapshot(self) -> dict[str, float]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {"api": _cpu_s(_tree(self.api_pid)),
                "postgres": _cpu_s(_tree(self.postmaster_pid)),
                "client": ru.ru_utime + ru.ru_stime, "machine": _machine_cpu_s()}

    @staticmethod
    def split(before: dict[str, float], after: dict[str, float], queries: int,
              seconds: float) -> dict[str, Any]:
        d = {k: after[k] - before[k] for k in before}
        d["others"] = d["machine"] - d["api"] - d["postgres"] - d["client"]
        ours = d["api"] + d["postgres"] + d["client"]
        cores = os.cpu_count() or 1
        return {
            "cpu_s": {k: round(v, 2) for k, v in d.items()},
            "cpu_ms_per_query": {k: round(1000 * d[k] / max(queries, 1), 2)
                                 for k in ("api", "postgres", "client")},
            "machine_busy_share": round(d["machine"] / (cores * seconds), 3),
            "others_share_of_machine": round(d["others"] / (cores * seconds), 3),
            # q/s these 2 cores would give the benchmark alone at this CPU per query
            "queries_per_s_if_machine_were_ours": round(
                queries * cores * seconds / max(ours, 1e-9) / seconds, 1),
            "queries_per_s_if_api_and_db_only": round(
                queries * cores / max(d["api"] + d["postgres"], 1e-9), 1),
        }


_LEVELS = ("metrics_1h", "metrics_project_1h", "metrics_endpoints_1h", "metrics_consumers_1h",
           "metrics_1d", "metrics_project_1d", "metrics_endpoints_1d", "metrics_consumers_1d")
_BUMP = 1000


def _freshness(url: str) -> dict[str, Any]:
    """How soon each hourly/daily level shows a re-emitted minute (+1,000 requests)."""
    from psycopg import sql

    from schemas.metric_tables import ALL_TABLES, column_list, replace_on_conflict

    cols = column_list()
    marks = ", ".join(["%s"] * len(cols.split(",")))
    upsert = f"INSERT INTO metrics_1m ({cols}) VALUES ({marks}) {replace_on_conflict()}"  # noqa: S608
    out: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        (newest,) = conn.execute("SELECT max(bucket) FROM metrics_1m").fetchone() or (None,)
        assert newest is not None  # noqa: S101
        for label, age in (("open_minute", timedelta(0)),
                           ("materialized_minute", timedelta(hours=3))):
            minute = newest - age
            row = conn.execute(sql.SQL("SELECT {} FROM metrics_1m WHERE project_id = %s AND "
                                       "bucket = %s LIMIT 1").format(sql.SQL(cols)),
                               (PROJECT, minute)).fetchone()
            assert row is not None  # noqa: S101 - the fill writes every minute
            counts = {}
            for t in _LEVELS:
                width = "1 hour" if t.endswith("_1h") else "1 day"
                q = sql.SQL("SELECT sum(request_count) FROM {} WHERE project_id = %s AND "
                            "bucket = time_bucket(%s::interval, %s::timestamptz)").format(
                    sql.Identifier(t))
                counts[t] = (q, (PROJECT, width, minute))
            before = {t: conn.execute(q, p).fetchone()[0] for t, (q, p) in counts.items()}
            bumped = list(row)
            bumped[6] = int(bumped[6]) + _BUMP  # request_count (after bucket + 5 key columns)
            t0 = time.perf_counter()
            conn.execute(upsert, bumped)
            seen: dict[str, float | None] = {}
            for t, (q, p) in counts.items():
                now_sum = conn.execute(q, p).fetchone()[0]
                seen[t] = (round((time.perf_counter() - t0) * 1000, 1)
                           if now_sum == before[t] + _BUMP else None)
            stale = [t for t, v in seen.items() if v is None]
            refresh_ms: dict[str, float] = {}
            if stale:  # what the refresh policies do on their schedule, level by level
                for table in ALL_TABLES:
                    if table.source is None:
                        continue
                    (job,) = conn.execute(
                        "SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_name"
                        " = %s AND proc_name = 'policy_refresh_continuous_aggregate'",
                        (table.name,)).fetchone() or (None,)
                    t1 = time.perf_counter()
                    conn.execute("CALL run_job(%s)", (job,))
                    refresh_ms[table.name] = round((time.perf_counter() - t1) * 1000, 1)
                after = {t: conn.execute(q, p).fetchone()[0] for t, (q, p) in counts.items()}
                for t in stale:
                    seen[t] = None if after[t] != before[t] + _BUMP else -1.0
            schedules = dict(conn.execute(
                "SELECT hypertable_name, extract(epoch FROM schedule_interval)::int FROM"
                " timescaledb_information.jobs WHERE proc_name ="
                " 'policy_refresh_continuous_aggregate'").fetchall())
            out[label] = {
                "minute": minute.isoformat(),
                "visible_at_once_ms": {t: v for t, v in seen.items() if v is not None and v >= 0},
                "visible_after_refresh": [t for t, v in seen.items() if v == -1.0],
                "never_visible": [t for t, v in seen.items() if v is None],
                "refresh_job_ms": refresh_ms,
                "refresh_schedule_s": {t: schedules.get(t) for t in refresh_ms},
            }
    return out


async def _load(base: str, secret: str, clients: int, seconds: float) -> dict[str, Any]:
    samples: list[tuple[str, str, float]] = []
    errors: list[str] = []
    done = [0]
    limits = httpx.Limits(max_connections=clients * len(CALLS))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {secret}"}) as client:
        start = time.perf_counter()
        count_from, until = start + WARMUP_S, start + WARMUP_S + seconds
        await asyncio.gather(*(_dashboard(client, list(RANGES)[i % len(RANGES)], until,
                                          count_from, samples, errors, done)
                               for i in range(clients)))
        # calls still in flight at ``until`` finish after it; count the true span
        span = max(time.perf_counter(), until) - count_from
        total_span = time.perf_counter() - start
    ms = np.array([s[2] for s in samples]) * 1000
    by_call = {}
    for call in CALLS:
        for range_name in RANGES:
            x = np.array([s[2] for s in samples if s[0] == call and s[1] == range_name]) * 1000
            if len(x):
                by_call[f"{call}_{range_name}"] = {
                    "n": len(x), "p50_ms": round(float(np.percentile(x, 50)), 1),
                    "p99_ms": round(float(np.percentile(x, 99)), 1)}
    return {"queries": len(ms), "answered_with_warmup": done[0],
            "seconds_with_warmup": round(total_span, 2),
            "errors": len(errors), "first_errors": errors[:3],
            "seconds": round(span, 2),
            "queries_per_s": round(len(ms) / span, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "by_call": by_call}


def _without_project_level(seconds: int, columns: Any) -> Any:
    """``smallest_table`` as it was before the per-project levels (0075)."""
    from schemas import metric_tables as mt

    for table in (*mt.ENDPOINT_TABLES, *mt.CONSUMER_TABLES, *mt.METRIC_TABLES):
        if table.seconds == seconds and columns <= set(table.key_names):
            return table
    raise ValueError(columns)


def _explain(url: str) -> dict[str, list[dict[str, Any]]]:
    """EXPLAIN ANALYZE of each statement the dashboard's calls run, as the routes build them.

    Wraps the repository's one fetch helper so the SQL is exactly the API's; the plans say
    which aggregate and how many chunks/digests each call reads, and where its time goes.
    """
    from psycopg import sql

    from query_api import repository as repo
    from query_api.params import Rollup, TimeRange, align, auto_step, rollup_for_step

    captured: list[dict[str, Any]] = []
    original, smallest = repo._fetch, repo.smallest_table

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
                # baseline: the historical call from the per-endpoint level (before 0075)
                repo.smallest_table = _without_project_level  # type: ignore[assignment]
                try:
                    repo.series(conn, table, PROJECT, align(rng, step), step)
                    repo.totals(conn, table, PROJECT, align(rng, step))
                finally:
                    repo.smallest_table = smallest
                out[f"historical_{range_name}_endpoint_level_baseline"] = captured[:]
                captured.clear()
    finally:
        repo._fetch = original
    return out


_NO_EDITABLE = (
    '"""Baseline only: import this tree\'s code, not the editable install\'s."""\n'
    "import sys\n\n"
    'sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]\n')


def _baseline_tree(rev: str, into: Path) -> Path:
    """The code of git revision ``rev`` in ``into``, importable ahead of the editable install."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev],  # noqa: S603, S607
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)  # noqa: S603, S607
    (into / "sitecustomize.py").write_text(_NO_EDITABLE)
    return into


def _start_api(url: str, port: int, workers: int, state: Path,
               code: Path | None = None) -> subprocess.Popen[bytes]:
    """``turnstile query`` on ``port``; from the tree ``code`` instead of ours when given."""
    env = {**os.environ, "TURNSTILE_DATABASE_URL": url, "TURNSTILE_STATE_DIR": str(state),
           "TURNSTILE_LAKE_URI": str(state / "lake"),
           "TURNSTILE_QUERY_LAKE_ROOT": str(state / "lake")}  # a baseline revision's name
    if code is not None:
        env["PYTHONPATH"] = str(code)
    (state / "lake").mkdir(parents=True, exist_ok=True)
    cli = Path(sys.executable).with_name("turnstile")
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [str(cli), "query", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning"], env=env, cwd=str(code or state))
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
        (backend,) = conn.execute("SELECT pg_backend_pid()").fetchone() or (0,)
        st = _stat(int(backend))
        assert st is not None  # noqa: S101 - the server runs on this machine
        postmaster = int(st[1])
    variants = ["current", *(["baseline"] if args.baseline_rev else [])]
    ports = dict(zip(variants, free_ports(len(variants)), strict=True))
    runs: list[dict[str, Any]] = []
    by_variant: dict[str, dict[str, Any]] = {v: {"runs": []} for v in variants}
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as state:
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for v in variants:
                code = None
                if v == "baseline":
                    (Path(state) / "baseline-code").mkdir()
                    code = _baseline_tree(args.baseline_rev, Path(state) / "baseline-code")
                procs[v] = _start_api(url, ports[v], args.workers, Path(state) / v, code)
            for v in variants:
                meter = CpuMeter(procs[v].pid, postmaster)
                base = f"http://127.0.0.1:{ports[v]}/"
                c0 = meter.snapshot()
                single = asyncio.run(_load(base, secret, 1, min(args.seconds, 10.0)))
                single["cpu"] = meter.split(c0, meter.snapshot(),
                                            single["answered_with_warmup"],
                                            single["seconds_with_warmup"])
                by_variant[v]["single_client"] = single
            for i in range(args.runs):
                for v in variants:  # alternated, so both meet the same machine
                    meter = CpuMeter(procs[v].pid, postmaster)
                    c0 = meter.snapshot()
                    r = asyncio.run(_load(f"http://127.0.0.1:{ports[v]}/", secret,
                                          args.clients, args.seconds))
                    r["cpu"] = meter.split(c0, meter.snapshot(), r["answered_with_warmup"],
                                           r["seconds_with_warmup"])
                    r["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                    by_variant[v]["runs"].append(r)
                    print(f"  run {i + 1} {v}: {r['queries_per_s']} q/s, p50 {r['p50_ms']} ms,"
                          f" p99 {r['p99_ms']} ms; CPU ms/call {r['cpu']['cpu_ms_per_query']}, "
                          f"others {r['cpu']['others_share_of_machine']:.0%} of the machine",
                          file=sys.stderr)
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                p.wait(timeout=30)
    runs = by_variant["current"]["runs"]
    single = by_variant["current"]["single_client"]
    explain = _explain(url) if args.explain else {}
    try:
        freshness = _freshness(url)
    except Exception as exc:  # noqa: BLE001 - keep the load figures; the error is recorded
        freshness = {"error": repr(exc)}
    figures = {k: statistics.median(r[k] for r in runs)
               for k in ("queries_per_s", "p50_ms", "p99_ms")}
    cpu = {part: statistics.median(r["cpu"]["cpu_ms_per_query"][part] for r in runs)
           for part in ("api", "postgres", "client")}
    figures["cpu_ms_per_query"] = cpu
    figures["others_share_of_machine"] = statistics.median(
        r["cpu"]["others_share_of_machine"] for r in runs)
    figures["queries_per_s_if_machine_were_ours"] = statistics.median(
        r["cpu"]["queries_per_s_if_machine_were_ours"] for r in runs)
    baseline = None
    if "baseline" in by_variant:
        b_runs = by_variant["baseline"]["runs"]
        baseline = {
            "code": f"git revision {args.baseline_rev} (before this branch), same database",
            **{k: statistics.median(r[k] for r in b_runs)
               for k in ("queries_per_s", "p50_ms", "p99_ms")},
            "cpu_ms_per_query": {part: statistics.median(
                r["cpu"]["cpu_ms_per_query"][part] for r in b_runs)
                for part in ("api", "postgres", "client")},
            "single_client": by_variant["baseline"]["single_client"],
            "runs": b_runs}
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
        "freshness": freshness,
        "baseline_same_run": baseline,
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
    parser.add_argument("--baseline-rev", default="",
                        help="also load an API running this git revision's code, alternated")
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
    print(f"CPU per call (median of runs): {f['cpu_ms_per_query']} ms; other work took "
          f"{f['others_share_of_machine']:.0%} of the machine; alone it would serve "
          f"~{f['queries_per_s_if_machine_were_ours']} q/s at this CPU per call")
    if result["baseline_same_run"]:
        b = result["baseline_same_run"]
        print(f"baseline ({b['code']}): {b['queries_per_s']} q/s, p50 {b['p50_ms']} ms, "
              f"p99 {b['p99_ms']} ms, CPU ms/call {b['cpu_ms_per_query']}")
    for label, x in result["freshness"].items():
        if not isinstance(x, dict):
            print(f"freshness: {x}")
            continue
        print(f"freshness, {label}: at once {x['visible_at_once_ms']}; after refresh "
              f"{x['visible_after_refresh']} (jobs {x['refresh_job_ms']} ms)")
    print(f"median: {f['queries_per_s']} q/s (target >= {TARGETS['queries_per_s']}), "
          f"p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms (target < {TARGETS['p99_ms']})")
    print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
