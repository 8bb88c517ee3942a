"""Whole pipeline, sustained: ``python -m benchmarks.pipeline [--quick]``.

Starts every service in the ``make run`` shape (``turnstile stack up --services``: Kafka,
PostgreSQL, gateway with 1 worker, speed layer, lake writer, billing scheduler, query API,
alerting) in a temp state folder on free ports, then posts the load generator's traffic
(``turnstile_cli.loadgen``: seeded realistic events, gzip'd JSON batches of 1,000) through
the gateway from CLIENTS keep-alive connections for SECONDS, as fast as it is accepted
(each POST waits for its 202). Then it waits until ``metrics_1m`` and the lake hold every
accepted event. Reported: offered and accepted events/s, the speed layer's lag (accepted
minus counted into ``metrics_1m``) over time and when it drained, the same for the lake,
sustained events/s = accepted / (load time + drain), peak RSS and CPU seconds per process.

The loadgen's own work (generate, JSON-encode and gzip: 14.3 s for 400,000 events in the
full run, 36 µs/event) would take more than the pipeline's whole CPU budget of the
machine's 2 cores; agents run on the API's machines, not on the pipeline's. So a pool of
POOL_BATCHES loadgen batches is encoded and gzip'd before the clock starts and posted
round-robin, each post with a fresh ``X-Turnstile-Batch-Id``: the speed layer counts an
event once per (batch id, position), so every post is new
traffic for every layer (event ids repeat across posts; nothing dedupes on them).

Settings that differ from ``make run``: the lake writer rolls every 5 s instead of 300 s
(so the drain is measured rather than the roll timer) and the speed layer emits every 1 s.
The stack is stopped on exit, on failure, on SIGTERM and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import pyarrow.parquet as pq

from benchmarks.chaos_stack import ChaosStack
from benchmarks.gateway import _cpu_s, _descendants
from schemas import keystore
from schemas.keys import KeyKind
from turnstile_cli.loadgen import TrafficSpec, generate
from turnstile_cli.loadgen.bodies import encode_bodies

RESULTS = Path(__file__).resolve().parent / "results" / "pipeline.json"
TARGET_SUSTAINED = 100_000
V1_SUSTAINED = 48_500  # issue 13: the same traffic on the v1 code (8 clients, 1,000-event batches)
V1_ACCEPTED = 62_900
SERVICE_ENV = {
    "TURNSTILE_BATCH_ROLL_SECONDS": "5",
    "TURNSTILE_SPEED_EMIT_INTERVAL_S": "1",
    "TURNSTILE_GATEWAY_RATE_LIMIT_EVENTS_PER_S": "0",
}
_GZIP_LEVEL = 5  # the loadgen's DirectSender's


class Stop(Exception):
    """SIGTERM: unwind so the stack is stopped."""


def _on_sigterm(_sig: int, _frame: FrameType | None) -> None:
    raise Stop


@dataclass
class Options:
    seconds: float
    clients: int
    pool_batches: int
    drain_timeout_s: float
    quick: bool
    events_per_batch: int = 1000


def parse(argv: list[str]) -> Options:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pipeline")
    ap.add_argument("--quick", action="store_true", help="15 s of load, small pool")
    ap.add_argument("--seconds", type=float, default=None, help="load duration (60)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent POSTs (8)")
    ap.add_argument("--pool-batches", type=int, default=None, help="distinct bodies (400)")
    ap.add_argument("--drain-timeout", type=float, default=None, help="seconds (240)")
    a = ap.parse_args(argv)
    return Options(seconds=a.seconds or (15.0 if a.quick else 60.0), clients=a.clients,
                   pool_batches=a.pool_batches or (60 if a.quick else 400),
                   drain_timeout_s=a.drain_timeout or (90.0 if a.quick else 240.0),
                   quick=a.quick)


def make_bodies(project: str, opts: Options) -> list[tuple[bytes, int]]:
    """The loadgen's traffic for ``project``, gzip'd like its DirectSender, with counts."""
    spec = TrafficSpec(seed=13, events=opts.pool_batches * opts.events_per_batch,
                       start_us=int(time.time() - 30) * 1_000_000, events_per_s=100_000.0,
                       projects=(project,), consumers=200, batch_size=opts.events_per_batch,
                       in_flight=opts.clients, run_id="pl")
    traffic = generate(spec)
    out = []
    for start in range(0, traffic.batches, 32):
        stop = min(traffic.batches, start + 32)
        for b, body in zip(range(start, stop), encode_bodies(traffic, start, stop),
                           strict=True):
            count = int(traffic.batch_offsets[b + 1] - traffic.batch_offsets[b])
            out.append((gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0), count))
    return out


@dataclass
class Load:
    """CLIENTS threads posting the pool round-robin until ``stop``; counts what got a 202."""

    port: int
    key: str
    bodies: list[tuple[bytes, int]]
    clients: int
    accepted: int = 0
    offered: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        tag = uuid.uuid4().hex[:8]
        i = offset
        while not self.stop.is_set():
            body, count = self.bodies[i % len(self.bodies)]
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                       "X-Api-Key": self.key, "X-Turnstile-Batch-Id": f"pl-{tag}-{i}"}
            i += self.clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/events/batch", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.offered += count
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                time.sleep(0.2)
                continue
            took = time.perf_counter() - t0
            with self._lock:
                self.offered += count
                self.latencies.append(took)
                if resp.status == 202 and json.loads(data)["accepted"] == count:
                    self.accepted += count
                else:
                    self.errors.append(f"{resp.status} {data[:200]!r}")
            if resp.status >= 500:
                time.sleep(0.2)
        conn.close()

    def run(self, seconds: float) -> float:
        threads = [threading.Thread(target=self._client, args=(k,), daemon=True)
                   for k in range(self.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        self.stop.wait(seconds)
        self.stop.set()
        for t in threads:
            t.join(60)
        return time.monotonic() - started


class LakeCount:
    """Rows in the committed Parquet files of one project (files are immutable once named)."""

    def __init__(self, root: Path, project: str) -> None:
        self._root = root
        self._project = project
        self._seen: dict[Path, int] = {}

    def rows(self) -> int:
        for path in self._root.glob(f"dt=*/project={self._project}/*.parquet"):
            if path not in self._seen and not path.name.startswith((".", "_")):
                try:
                    self._seen[path] = pq.read_metadata(path).num_rows
                except (OSError, ValueError):  # being renamed into place
                    continue
        return sum(self._seen.values())


def counted(stack: ChaosStack, project: str) -> int:
    rows = stack.query("SELECT coalesce(sum(request_count), 0)::bigint FROM metrics_1m"
                       " WHERE project_id = %s", (project,))
    return int(rows[0][0])


def _rss_peaks_mib(pids: list[int]) -> tuple[float, float]:
    """(largest single-process peak RSS, sum of peaks) of ``pids``, MiB (VmHWM)."""
    peaks = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return (max(peaks, default=0.0), sum(peaks))


def service_pids(stack: ChaosStack) -> dict[str, list[int]]:
    """Each component's processes: its pid and its children, not another component's tree
    (the supervisor is every service's parent)."""
    roots = {name: row.pid for name, row in stack.status().items() if row.pid}
    others = set(roots.values())
    out = {}
    for name, pid in roots.items():
        mine = _descendants(pid)
        for other in others - {pid}:
            if other in mine:
                theirs = set(_descendants(other))
                mine = [p for p in mine if p not in theirs]
        out[name] = mine
    out["load client"] = [os.getpid()]
    return out


def run(opts: Options, stack: ChaosStack) -> dict[str, Any]:
    up_s = stack.up(SERVICE_ENV)
    project = f"pipeline-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        keystore.create_project(conn, project)
        key = keystore.create_key(conn, project, KeyKind.WRITE, "pipeline").secret
    t0 = time.monotonic()
    bodies = make_bodies(project, opts)
    encode_s = time.monotonic() - t0
    lake = LakeCount(stack.lake_root, project)
    pids = service_pids(stack)
    cpu0 = {k: _cpu_s(v) for k, v in pids.items()}

    load = Load(stack.gateway_port, key, bodies, opts.clients)
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                speed, in_lake = counted(stack, project), lake.rows()
            except Exception:  # noqa: BLE001 - a missed sample is not a failure
                done.wait(1.0)
                continue
            samples.append({"t_s": round(time.monotonic() - started, 1),
                            "accepted": load.accepted, "metrics_1m": speed, "lake": in_lake})
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    load_s = load.run(opts.seconds)
    total = load.accepted
    speed_done = lake_done = None
    while time.monotonic() - started < load_s + opts.drain_timeout_s:
        now = time.monotonic() - started
        if speed_done is None and counted(stack, project) >= total:
            speed_done = now
        if lake_done is None and lake.rows() >= total:
            lake_done = now
        if speed_done is not None and lake_done is not None:
            break
        time.sleep(0.5)
    done.set()
    sampler.join(5)
    cpu = {k: round(_cpu_s(v) - cpu0[k], 1) for k, v in service_pids(stack).items()
           if k in cpu0}
    rss = {k: _rss_peaks_mib(v) for k, v in service_pids(stack).items()}
    final_speed, final_lake = counted(stack, project), lake.rows()
    end = max(speed_done or 0.0, lake_done or 0.0)
    at_stop = [s for s in samples if s["t_s"] <= load_s]
    last = at_stop[-1] if at_stop else {"accepted": total, "metrics_1m": 0, "lake": 0}
    lat = sorted(load.latencies)
    return {
        "stack_up_s": round(up_s, 1), "bodies_encoded_s": round(encode_s, 1),
        "project": project, "load_seconds": round(load_s, 1),
        "offered_events_per_s": round(load.offered / load_s),
        "accepted_events_per_s": round(total / load_s),
        "accepted_events": total, "errors": len(load.errors),
        "first_errors": load.errors[:3],
        "post_p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "post_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1) if lat else None,
        "speed_lag_events_at_load_stop": int(last["accepted"] - last["metrics_1m"]),
        "lake_lag_events_at_load_stop": int(last["accepted"] - last["lake"]),
        "speed_drained_s_after_load": (round(speed_done - load_s, 1)
                                       if speed_done is not None else None),
        "lake_drained_s_after_load": (round(lake_done - load_s, 1)
                                      if lake_done is not None else None),
        "metrics_1m_events": final_speed, "lake_events": final_lake,
        "drained": speed_done is not None and lake_done is not None,
        "sustained_events_per_s": (round(total / end) if speed_done is not None
                                   and lake_done is not None else None),
        "sustained_metrics_1m_events_per_s": (round(total / speed_done)
                                              if speed_done else None),
        "sustained_lake_events_per_s": round(total / lake_done) if lake_done else None,
        "cpu_seconds": cpu,
        "cpu_cores_during_run": {k: round(v / end, 2) for k, v in cpu.items()} if end else {},
        "peak_rss_mib": {k: {"largest_process": round(a), "sum_of_processes": round(b)}
                         for k, (a, b) in rss.items()},
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts = parse(args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    state = Path(tempfile.mkdtemp(prefix="turnstile-pipeline-"))
    state.chmod(0o755)  # PostgreSQL runs as its own user and must enter the folder
    stack = ChaosStack.on_free_ports(state)
    started = time.monotonic()
    try:
        measured = run(opts, stack)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not skip this
        stack.down()
        logs = state / "logs"
        if logs.exists():  # the services' logs outlive the state folder, for a failed run
            shutil.copytree(logs, Path(tempfile.gettempdir()) / f"{state.name}-logs",
                            dirs_exist_ok=True)
        shutil.rmtree(state, ignore_errors=True)
    sustained = measured["sustained_events_per_s"]
    result = {
        "benchmark": "pipeline",
        "command": "python -m benchmarks.pipeline " + " ".join(args),
        "note": "2-core machine shared with other engineers' tests and benchmarks during "
                "the run; one run (the benchmark is heavy), figures are not medians",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "setup": {"shape": "turnstile stack up --services (make run): gateway 1 worker, "
                           "speed 1 worker, lake writer, billing, query, alerting",
                  "service_env": SERVICE_ENV, "clients": opts.clients,
                  "events_per_batch": opts.events_per_batch,
                  "pool_batches": opts.pool_batches, "load_seconds": opts.seconds,
                  "gzip_level": _GZIP_LEVEL},
        **measured,
        "target_sustained_events_per_s": TARGET_SUSTAINED,
        "meets_target": bool(sustained and sustained >= TARGET_SUSTAINED),
        "v1_before_issue_13": {"sustained_events_per_s": V1_SUSTAINED,
                               "accepted_events_per_s": V1_ACCEPTED},
        "seconds": round(time.monotonic() - started, 1),
    }
    out = Path(os.environ.get("TURNSTILE_PIPELINE_RESULTS", RESULTS))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    m = measured
    print(f"offered {m['offered_events_per_s']:,} events/s, accepted "  # noqa: T201
          f"{m['accepted_events_per_s']:,} events/s for {m['load_seconds']} s "
          f"({m['errors']} errors); at load stop the speed layer was "
          f"{m['speed_lag_events_at_load_stop']:,} and the lake "
          f"{m['lake_lag_events_at_load_stop']:,} events behind; drained "
          f"{m['speed_drained_s_after_load']} s / {m['lake_drained_s_after_load']} s later")
    print(f"sustained {sustained} events/s (target {TARGET_SUSTAINED:,}; "  # noqa: T201
          f"v1 {V1_SUSTAINED:,}); CPU s {m['cpu_seconds']}; -> {out}")
    return 0 if m["drained"] and not m["errors"] else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except (KeyboardInterrupt, Stop):
        raise SystemExit(130) from None
