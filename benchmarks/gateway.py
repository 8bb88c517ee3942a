"""Gateway throughput, end to end: ``python -m benchmarks.gateway``.

Starts a private Kafka + PostgreSQL (temp folder, free ports; or $TURNSTILE_KAFKA_BOOTSTRAP
and $TURNSTILE_DATABASE_URL), then ``turnstile gateway --workers N`` (BENCH_WORKERS, 2).
A load client on 127.0.0.1 (CLIENTS threads, keep-alive connections) posts gzip'd batches
of 1,000 realistic events for DURATION_S seconds per run; a batch counts once the gateway
answered 202, i.e. once Kafka acknowledged all of it (idempotent producer, acks=all, lz4).
Baseline in the same run: a plain confluent-kafka producer with the gateway's
configuration pushing the same encoded records from one process, flushed (the practical
limit of the broker on this box).
Figures are medians over RUNS runs. Then one more load run with ``py-spy`` sampling every
worker (BENCH_PROFILE=0 skips it): where a worker's CPU goes, by stage (gzip, JSON decode,
validation, Arrow build, produce, HTTP), so a missed target shows what stops it.
BENCH_BEFORE=<results file> embeds an earlier run's figures (the code before a change).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from ingest_gateway.producer import producer_config
from ingest_gateway.settings import GatewaySettings
from schemas import keystore
from schemas.keys import KeyKind
from schemas.migrate import migrate
from schemas.records import V2Record, encode_event_records
from schemas.settings import KafkaSettings
from schemas.validation import validate_batch
from turnstile_cli.stack import LocalStack, StackConfig, ensure_topic, free_ports

EVENTS_PER_BATCH = 1000
BODIES = 20
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "16"))  # enough in flight to cover linger + RTT
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
BASELINE_RECORDS = 300_000
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
# py-spy (a dev dependency) next to the interpreter; without it the profiled run is skipped.
PROFILE = (os.environ.get("BENCH_PROFILE", "1") != "0"
           and Path(sys.executable).with_name("py-spy").exists())
TARGET_EVENTS_PER_S = 250_000
RESULTS = Path(os.environ.get("BENCH_RESULTS") or
               Path(__file__).resolve().parent / "results" / "gateway.json")
# A sampled stack belongs to the first stage whose function it holds (innermost wins).
_STAGES = (("gzip inflate", "decode_body"), ("JSON decode (msgspec)", "decode_incoming"),
           ("validation", "validate_events"), ("enrichment", "enrich"),
           ("Arrow build: columns", "event_record_columns"),
           ("Arrow build: records + IPC", "encode_columns"),
           ("produce + wait", "publish"), ("body read", "read"),
           ("Kafka poll thread", "_poll"))

_ENDPOINTS = ["/v1/users/{id}", "/v1/orders/{id}", "/v1/orders", "/v1/search", "/v1/items/{id}",
              "/v1/payments/{id}/refunds", "/health", "/v1/users/{id}/settings"]
_METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
_AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
           "python-requests/2.32.3", "okhttp/4.12.0", "curl/8.5.0", "Go-http-client/1.1"]


def realistic_bodies(rng: random.Random) -> list[list[dict]]:
    now = time.time()
    bodies = []
    for b in range(BODIES):
        events = []
        for i in range(EVENTS_PER_BATCH):
            endpoint = rng.choice(_ENDPOINTS)
            path = endpoint.replace("{id}", str(rng.randint(1, 10**7)))
            status = rng.choices([200, 201, 204, 400, 404, 429, 500], [80, 5, 3, 4, 5, 2, 1])[0]
            events.append({
                "event_id": f"{uuid.uuid4().hex}-{b}-{i}",
                "timestamp": now - rng.random() * 5,
                "method": rng.choice(_METHODS),
                "path": path,
                "endpoint": endpoint,
                "status_code": status,
                "latency_ms": round(rng.lognormvariate(3.0, 0.8), 3),
                "request_bytes": rng.randint(0, 4000),
                "response_bytes": rng.randint(50, 60_000),
                "api_key": f"cust_{rng.randint(1, 1000):04d}",
                "ip": f"203.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "user_agent": rng.choice(_AGENTS),
            })
        bodies.append(events)
    return bodies


def start_servers(root: Path) -> LocalStack:
    kafka_port, controller_port, pg_port = free_ports(3)
    local = LocalStack(StackConfig(
        state_dir=root, kafka_port=kafka_port, kafka_controller_port=controller_port,
        postgres_port=pg_port,
        external_kafka=os.environ.get("TURNSTILE_KAFKA_BOOTSTRAP") or None,
        external_database=os.environ.get("TURNSTILE_DATABASE_URL") or None,
    ))
    local.up(KafkaSettings(bootstrap=local.kafka_bootstrap), timeout=120.0)
    return local


def baseline(bootstrap: str, topic: str, records: list[V2Record]) -> float:
    """Events/s of one plain producer with the gateway's settings producing the v2 records
    of one realistic batch (to their partitions) again and again, all records acked."""
    settings = GatewaySettings(kafka=KafkaSettings(bootstrap=bootstrap, events_topic=topic))
    producer = Producer(producer_config(settings))
    failed = 0

    def on_delivery(err, _msg) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    n = len(records)
    events = 0
    started = time.perf_counter()
    i = 0
    while events < BASELINE_RECORDS:
        rec = records[i % n]
        while True:
            try:
                producer.produce(topic, rec.value, rec.key, rec.partition, on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        events += rec.events
        i += 1
        if i % 1_000 == 0:
            producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"baseline: {failed} records failed")
    return events / elapsed


def load(port: int, key: str, bodies: list[bytes], duration: float) -> dict:
    """CLIENTS threads posting for ``duration`` s; accepted events/s and latency."""
    stop = time.monotonic() + duration
    latencies: list[float] = []
    accepted = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                   "X-Api-Key": key}
        mine, ok, i = [], 0, offset
        while time.monotonic() < stop:
            body = bodies[i % len(bodies)]
            i += 1
            t0 = time.perf_counter()
            conn.request("POST", "/api/v1/events/batch", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            mine.append(time.perf_counter() - t0)
            if resp.status == 202:
                ok += json.loads(data)["accepted"]
            else:
                with lock:
                    errors.append(f"{resp.status} {data[:100]!r}")
        with lock:
            latencies.extend(mine)
            accepted[0] += ok
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "events_per_s": accepted[0] / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


_TICKS = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn's workers, PostgreSQL's backends)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return out


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of the given processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def _machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine, all cores (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS


class CpuSplit:
    """CPU used by each party during a load run: who spends the 2 cores."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self._groups = groups

    def __enter__(self) -> CpuSplit:
        self._t0 = time.perf_counter()
        self._start = {k: _cpu_s(v) for k, v in self._groups.items()}
        self._machine0 = _machine_cpu_s()
        return self

    def __exit__(self, *_exc: object) -> None:
        elapsed = time.perf_counter() - self._t0
        used = {k: _cpu_s(v) - self._start[k] for k, v in self._groups.items()}
        used["other processes"] = max(0.0, _machine_cpu_s() - self._machine0 - sum(used.values()))
        self.cores = {k: v / elapsed for k, v in used.items()}


def _stage_of(stack: str) -> str:
    frames = [f.split(" (", 1)[0] for f in stack.split(";")]
    for frame in reversed(frames):
        for stage, function in _STAGES:
            if frame == function or frame.endswith("." + function):
                return stage
    return "HTTP, ASGI and the event loop (uvicorn, starlette, fastapi)"


def profile_workers(pids: list[int], seconds: float, out_dir: Path) -> dict[str, float]:
    """``py-spy`` on each worker for ``seconds``: share of sampled (busy) time per stage."""
    spy = Path(sys.executable).with_name("py-spy")
    procs = [subprocess.Popen([str(spy), "record", "-p", str(pid), "-d", str(int(seconds)),
                               "-r", "200", "-f", "raw", "--nonblocking",
                               "-o", str(out_dir / f"spy-{pid}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for pid in pids]
    for proc in procs:
        proc.wait(seconds + 60)
    counts: dict[str, int] = {}
    for pid in pids:
        path = out_dir / f"spy-{pid}.txt"
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if stack and n.isdigit():
                stage = _stage_of(stack)
                counts[stage] = counts.get(stage, 0) + int(n)
    total = sum(counts.values()) or 1
    return {k: round(v / total, 3) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gateway exited")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("gateway not ready")


def stage_costs(project: str = "bench", repeats: int = 5) -> dict[str, float]:
    """CPU µs per event of each request stage, in this process (``time.process_time``).

    CPU time, not wall time: on a shared machine a stage's CPU cost barely moves with the
    load while throughput does, so this is the before/after comparison that holds. Best
    of ``repeats`` passes over the benchmark's bodies.
    """
    from ingest_gateway.body import decode_body
    from schemas.records import KeyPartitioner
    from schemas.validation import decode_incoming, validate_events

    rng = random.Random(42)
    raw = [json.dumps(b, separators=(",", ":")).encode() for b in realistic_bodies(rng)]
    wire = [gzip.compress(r, compresslevel=5) for r in raw]
    partitioner = KeyPartitioner(12)
    now_us = time.time_ns() // 1000
    best: dict[str, float] = {}
    for _ in range(repeats):
        spent = dict.fromkeys(("gzip inflate", "JSON decode", "validation", "Arrow records"),
                              0.0)
        for i, body in enumerate(wire):
            t0 = time.process_time()
            plain = decode_body(body, "gzip", 5 * 1024 * 1024)
            t1 = time.process_time()
            decoded = decode_incoming(plain)
            t2 = time.process_time()
            batch = validate_events(decoded.items, project_id=project, received_at_us=now_us,
                                    batch_id=f"b{i}", check_text=decoded.check_text)
            t3 = time.process_time()
            encode_event_records(batch.records, batch_id=f"b{i}", partitioner=partitioner)
            t4 = time.process_time()
            for k, v in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                spent[k] += v
        events = len(wire) * EVENTS_PER_BATCH
        for k, v in spent.items():
            best[k] = min(best.get(k, float("inf")), v * 1e6 / events)
    out = {k: round(v, 3) for k, v in best.items()}
    out["total"] = round(sum(best.values()), 3)
    return out


def main() -> None:
    if "--stages" in sys.argv[1:]:  # the in-process stage costs only, no servers
        print(json.dumps(stage_costs(), indent=2))
        return
    stages = stage_costs()
    root = Path(tempfile.mkdtemp(prefix="turnstile-bench-gw-"))
    root.chmod(0o755)
    local = start_servers(root / "stack")
    gateway: subprocess.Popen | None = None
    try:
        migrate(local.database_url)
        project = f"bench-{uuid.uuid4().hex[:8]}"
        with psycopg.connect(local.database_url, autocommit=True) as conn:
            keystore.create_project(conn, project)
            key = keystore.create_key(conn, project, KeyKind.WRITE, "bench").secret
        topic = f"bench.gateway.{uuid.uuid4().hex[:8]}"
        ensure_topic(local.kafka_bootstrap, topic, 12)

        rng = random.Random(42)
        events = realistic_bodies(rng)
        raw = [json.dumps(b, separators=(",", ":")).encode() for b in events]
        bodies = [gzip.compress(r, compresslevel=5) for r in raw]
        batch = validate_batch(raw[0], project_id=project, received_at_us=time.time_ns() // 1000)
        v2_records = encode_event_records(batch.records, batch_id="baseline", partitioner=12)

        (port,) = free_ports(1)
        env = {**os.environ, "TURNSTILE_KAFKA_BOOTSTRAP": local.kafka_bootstrap,
               "TURNSTILE_KAFKA_EVENTS_TOPIC": topic,
               "TURNSTILE_DATABASE_URL": local.database_url,
               "TURNSTILE_STATE_DIR": str(root / "state"),
               "TURNSTILE_GATEWAY_RATE_LIMIT_EVENTS_PER_S": "0"}
        gateway = subprocess.Popen(
            [sys.executable, "-c", "from turnstile_cli.main import app; app()", "gateway",
             "--workers", str(WORKERS), "--port", str(port), "--log-level", "warning"],
            env=env, stdin=subprocess.DEVNULL,
        )
        wait_ready(port, gateway)
        load(port, key, bodies, 3.0)  # warm-up: connections, caches, producer metadata

        groups = {"gateway workers": _descendants(gateway.pid),
                  "kafka broker": [local.kafka.pid] if local.kafka.pid else [],
                  "postgres": _descendants(local.postgres.pid) if local.postgres.pid else [],
                  "load client": [os.getpid()]}
        workers = [p for p in groups["gateway workers"] if p != gateway.pid] or [gateway.pid]
        if WORKERS > 1:  # uvicorn's parent only supervises; its workers are its children
            workers = [p for p in workers if _cmdline(p).count("multiprocessing") and
                       "resource_tracker" not in _cmdline(p)] or workers
        runs = []
        for _ in range(RUNS):
            base = baseline(local.kafka_bootstrap, topic, v2_records)
            with CpuSplit(groups) as split:
                measured = load(port, key, bodies, DURATION_S)
            runs.append({"baseline_events_per_s": base, **measured,
                         "cpu_cores": {k: round(v, 2) for k, v in split.cores.items()}})
        profile: dict[str, float] = {}
        if PROFILE:
            spy = threading.Thread(target=lambda: profile.update(
                profile_workers(workers, DURATION_S - 2, root)))
            spy.start()
            profiled = load(port, key, bodies, DURATION_S)
            spy.join()
            profile = {"events_per_s_while_profiled": round(profiled["events_per_s"]),
                       "workers_profiled": len(workers), "share_of_busy_samples": profile}
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(30)
            except subprocess.TimeoutExpired:
                gateway.kill()
        local.down(timeout=30.0)
        shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(r[k] for r in runs)
           for k in ("events_per_s", "p50_ms", "p99_ms", "baseline_events_per_s")}
    ratio = med["events_per_s"] / med["baseline_events_per_s"]
    defaults = GatewaySettings()
    cpu = {k: round(statistics.median(r["cpu_cores"][k] for r in runs), 2)
           for k in runs[0]["cpu_cores"]}
    per_event_us = {k: round(v * 1e6 / med["events_per_s"], 2) for k, v in cpu.items()}
    before = None
    if os.environ.get("BENCH_BEFORE"):
        old = json.loads(Path(os.environ["BENCH_BEFORE"]).read_text())
        before = {k: old.get(k) for k in ("events_per_s", "p50_ms", "p99_ms",
                                          "baseline_events_per_s", "ratio_vs_baseline",
                                          "cpu_cores_median", "setup", "command")}
    result = {
        "benchmark": "gateway",
        "command": (" ".join(f"{k}={os.environ[k]}" for k in ("BENCH_WORKERS", "BENCH_RUNS")
                             if k in os.environ) + " python -m benchmarks.gateway").strip(),
        "note": "2-core machine shared with other engineers' tests and benchmarks during the "
                "runs; compare the ratio to the raw producer measured in the same run",
        "machine": {"cores": os.cpu_count(), "memory_gib": _memory_gib(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "setup": {"workers": WORKERS, "clients": CLIENTS, "events_per_batch": EVENTS_PER_BATCH,
                  "duration_s": DURATION_S, "runs": RUNS, "partitions": 12,
                  "compression": defaults.compression, "linger_ms": defaults.linger_ms,
                  "acks": "all", "idempotent": True, "gzip_bodies": True},
        "events_per_s": round(med["events_per_s"]),
        "p50_ms": round(med["p50_ms"], 2),
        "p99_ms": round(med["p99_ms"], 2),
        "baseline_events_per_s": round(med["baseline_events_per_s"]),
        "ratio_vs_baseline": round(ratio, 3),
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "meets_target": med["events_per_s"] >= TARGET_EVENTS_PER_S,
        "cpu_cores_median": cpu,
        "cpu_us_per_event": per_event_us,
        "stage_cpu_us_per_event": stages,
        "profile": profile,
        "before_this_change": before,
        "runs_detail": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':34}{'events/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{f'gateway, {WORKERS} workers (end to end)':34}{med['events_per_s']:>12,.0f}"
          f"{med['p50_ms']:>10.1f}{med['p99_ms']:>10.1f}")
    print(f"{'baseline: one plain producer':34}{med['baseline_events_per_s']:>12,.0f}")
    print(f"ratio vs baseline {ratio:.2f}; target {TARGET_EVENTS_PER_S:,} events/s "
          f"-> {'met' if result['meets_target'] else 'NOT met'}; errors "
          f"{sum(r['errors'] for r in runs)}; -> {RESULTS}")
    print("CPU during the load runs (cores, of " + str(os.cpu_count()) + "): "
          + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    print(f"CPU µs per event: {per_event_us}")
    print(f"in-process CPU µs per event by stage: {stages}")
    if profile:
        print(f"worker profile (share of busy samples): {profile['share_of_busy_samples']}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _memory_gib() -> float:
    try:
        return round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    except (ValueError, OSError):
        return 0.0


if __name__ == "__main__":
    main()
