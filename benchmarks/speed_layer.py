"""Speed layer throughput (topic → PostgreSQL) and freshness, against a real local stack.

    python -m benchmarks.speed_layer [--events 2000000] [--runs 3] [--freshness-s 20]

Pre-fills a 12-partition topic with realistic events (100,000 distinct series), then runs
``turnstile speed --stop-at-end`` with 1 and 2 workers (recovery on) and times it from
process start to exit; the baseline, in the same run, is a plain confluent-kafka consumer
that only consumes and decodes the same records. Freshness: a steady 20,000 events/s
load while the flow runs; per 100 ms slice, the time from the producer's ack to the slice
being fully counted in metrics_1m. Uses TURNSTILE_KAFKA_BOOTSTRAP / TURNSTILE_DATABASE_URL
when set, else starts a private stack in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.codec import decode_metric_columns, encode_records, record_key
from schemas.event import EventRecord
from schemas.migrate import migrate
from schemas.settings import KafkaSettings
from schemas.topics import BATCH_ID_HEADER
from turnstile_cli.stack import LocalStack, StackConfig, ensure_topic, free_ports

RESULTS = Path(__file__).resolve().parent / "results" / "speed_layer.json"
PARTITIONS = 12
ENDPOINTS = [f"/v1/resource{i}/{{id}}" for i in range(10)]
COMBOS = [("GET", 200), ("GET", 404), ("POST", 201), ("POST", 500), ("DELETE", 302)]


def make_events(n: int, seed: int, start_us: int, minutes: int = 10) -> list[EventRecord]:
    """~100,000 series: 2,000 (project, api_key) × 10 endpoints × 5 method/status classes."""
    rng = np.random.default_rng(seed)
    pair = rng.integers(0, 2_000, n)
    endpoint = rng.integers(0, len(ENDPOINTS), n)
    combo = rng.integers(0, len(COMBOS), n)
    ts = start_us + np.sort(rng.integers(0, minutes * 60_000_000, n)) + rng.integers(
        -2_000_000, 2_000_000, n)
    latency = rng.lognormal(3.5, 0.9, n)
    req = rng.integers(100, 4_000, n)
    resp = rng.integers(200, 60_000, n)
    out = []
    for i in range(n):
        p = int(pair[i])
        method, status = COMBOS[combo[i]]
        out.append(EventRecord(
            event_id=f"{seed}-{i}", project_id=f"proj{p % 50}", timestamp_us=int(ts[i]),
            received_at_us=int(ts[i]) + 500, method=method, path="/v1/x/1",
            endpoint=ENDPOINTS[endpoint[i]], status_code=status,
            latency_ms=float(latency[i]), request_bytes=int(req[i]),
            response_bytes=int(resp[i]), api_key=f"cust{p}", country="DE",
            user_agent="bench/1.0"))
    return out


def produce(bootstrap: str, topic: str, records: list[EventRecord], batch: int = 1000) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "compression.type": "zstd", "enable.idempotence": True,
                         "queue.buffering.max.messages": 1_000_000})
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        headers = [(BATCH_ID_HEADER, f"b{start}".encode())]
        for r, value in zip(chunk, encode_records(chunk), strict=True):
            while True:
                try:
                    producer.produce(topic, value, record_key(r.project_id, r.api_key),
                                     headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("prefill not delivered")


def baseline(bootstrap: str, topic: str, n: int) -> float:
    """Plain Python consumer: consume + decode every record, no aggregation."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bl-{uuid.uuid4()}",
                         "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                         "max.partition.fetch.bytes": 16 << 20})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = 0
    started = time.perf_counter()
    while seen < n:
        msgs = consumer.consume(5_000, 1.0)
        values = [m.value() for m in msgs if m.error() is None]
        if values:
            cols, _ = decode_metric_columns(values)
            seen += len(cols)
    elapsed = time.perf_counter() - started
    consumer.close()
    return n / elapsed


def flow_env(bootstrap: str, dsn: str, topic: str, state: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TURNSTILE_KAFKA_BOOTSTRAP": bootstrap, "TURNSTILE_DATABASE_URL": dsn,
            "TURNSTILE_KAFKA_EVENTS_TOPIC": topic, "TURNSTILE_STATE_DIR": str(state),
            "TURNSTILE_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dlq", **extra}


def run_flow(bootstrap: str, dsn: str, topic: str, workers: int, n: int) -> dict[str, float]:
    state = Path(tempfile.mkdtemp(prefix="speed-bench-"))
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("TRUNCATE metrics_1m")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnstile_cli.main", "speed", "-w", str(workers),
         "--stop-at-end"], env=flow_env(bootstrap, dsn, topic, state),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    shutil.rmtree(state, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"speed layer exited with {proc.returncode}")
    with psycopg.connect(dsn, autocommit=True) as db:
        counted = db.execute("SELECT sum(request_count), count(*) FROM metrics_1m").fetchone()
    if counted is None or counted[0] != n:
        raise RuntimeError(f"metrics_1m counts {counted}, expected {n}")
    return {"seconds": elapsed, "events_per_s": n / elapsed, "peak_rss_mb": usage.ru_maxrss / 1024,
            "rows": float(counted[1])}


def freshness(bootstrap: str, dsn: str, seconds: float, rate: int = 20_000) -> dict[str, float]:
    topic = f"bench.fresh.{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, PARTITIONS)
    state = Path(tempfile.mkdtemp(prefix="speed-fresh-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnstile_cli.main", "speed", "-w", "1"],
        env=flow_env(bootstrap, dsn, topic, state, TURNSTILE_SPEED_START_OFFSET="earliest"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    slice_n = rate // 10
    acked: dict[str, float] = {}
    done: dict[str, float] = {}
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(dsn, autocommit=True) as db:
            while not stop.is_set():
                for project, count in db.execute(
                    "SELECT project_id, sum(request_count) FROM metrics_1m"
                    " WHERE project_id LIKE 'fresh-%' GROUP BY 1").fetchall():
                    if count >= slice_n and project not in done:
                        done[project] = time.time()
                time.sleep(0.05)

    try:
        time.sleep(4)  # the flow starting up is not freshness
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        for i in range(int(seconds * 10)):
            tick = time.time()
            now_us = int(tick * 1e6)
            project = f"fresh-{i}"
            recs = [EventRecord(event_id=f"f{i}-{j}", project_id=project, timestamp_us=now_us,
                                received_at_us=now_us, method="GET", path="/a", endpoint="/a",
                                status_code=200, latency_ms=12.0, api_key=f"c{j % 40}")
                    for j in range(slice_n)]

            def acked_cb(err: object, _msg: object, project: str = project) -> None:
                if err is None:
                    acked[project] = time.time()

            for r, value in zip(recs, encode_records(recs), strict=True):
                producer.produce(topic, value, record_key(r.project_id, r.api_key),
                                 on_delivery=acked_cb)
            producer.flush(10)
            time.sleep(max(0.0, 0.1 - (time.time() - tick)))
        deadline = time.time() + 15
        while len(done) < len(acked) and time.time() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(state, ignore_errors=True)
    lags = [(done[p] - acked[p]) * 1000 for p in acked if p in done]
    return {"slices": len(acked), "slices_counted": len(lags),
            "p50_ms": float(np.percentile(lags, 50)), "p99_ms": float(np.percentile(lags, 99))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--freshness-s", type=float, default=20.0)
    args = parser.parse_args()
    external = os.environ.get("TURNSTILE_KAFKA_BOOTSTRAP") and os.environ.get(
        "TURNSTILE_DATABASE_URL")
    root = Path(tempfile.mkdtemp(prefix="speed-bench-stack-"))
    root.chmod(0o755)
    stack = None
    if external:
        bootstrap = os.environ["TURNSTILE_KAFKA_BOOTSTRAP"]
        dsn = os.environ["TURNSTILE_DATABASE_URL"]
    else:
        k, c, p = free_ports(3)
        stack = LocalStack(StackConfig(state_dir=root, kafka_port=k, kafka_controller_port=c,
                                       postgres_port=p))
        stack.up(KafkaSettings(bootstrap=stack.kafka_bootstrap), timeout=90.0)
        bootstrap, dsn = stack.kafka_bootstrap, stack.database_url
    try:
        migrate(dsn)
        topic = f"bench.speed.{uuid.uuid4().hex[:8]}"
        ensure_topic(bootstrap, topic, PARTITIONS)
        t = time.perf_counter()
        records = make_events(args.events, seed=1, start_us=int(time.time() * 1e6) - 3_600_000_000)
        produce(bootstrap, topic, records)
        del records
        prefill_s = time.perf_counter() - t
        base = [baseline(bootstrap, topic, args.events) for _ in range(args.runs)]
        flows = {w: [run_flow(bootstrap, dsn, topic, w, args.events) for _ in range(args.runs)]
                 for w in (1, 2)}
        fresh = freshness(bootstrap, dsn, args.freshness_s) if args.freshness_s > 0 else {}
    finally:
        if stack is not None:
            stack.down(timeout=30.0)
        shutil.rmtree(root, ignore_errors=True)

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    base_eps = statistics.median(base)
    result = {
        "command": "python -m benchmarks.speed_layer " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "memory_gb": round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version()},
        "events": args.events, "series": 100_000, "partitions": PARTITIONS, "runs": args.runs,
        "prefill_seconds": round(prefill_s, 1),
        "baseline_consume_decode_events_per_s": round(base_eps),
        "workers": {
            str(w): {
                "events_per_s": round(med(r, "events_per_s")),
                "events_per_s_per_worker": round(med(r, "events_per_s") / w),
                "seconds": round(med(r, "seconds"), 2),
                "ratio_vs_baseline": round(med(r, "events_per_s") / base_eps, 3),
                "peak_rss_mb": round(max(x["peak_rss_mb"] for x in r), 1),
                "metrics_1m_rows": int(med(r, "rows")),
            } for w, r in flows.items()
        },
        "freshness_20k_events_per_s": fresh,
        "notes": "seconds = process start to exit (includes ~1-2 s of start-up and the final "
                 "flush); recovery snapshots on (every 10 s).",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measure':<40}{'value':>16}")
    print(f"{'baseline consume+decode events/s':<40}{base_eps:>16,.0f}")
    for w, r in result["workers"].items():
        print(f"{f'{w} worker(s) events/s':<40}{r['events_per_s']:>16,}")
        print(f"{f'{w} worker(s) ratio vs baseline':<40}{r['ratio_vs_baseline']:>16}")
        print(f"{f'{w} worker(s) peak RSS MB':<40}{r['peak_rss_mb']:>16}")
    for k, v in fresh.items():
        print(f"{'freshness ' + k:<40}{v:>16,.1f}")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
