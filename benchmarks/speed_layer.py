"""Speed layer throughput (topic → PostgreSQL) and freshness, against a real local stack.

    python -m benchmarks.speed_layer [--events 2000000] [--runs 3] [--freshness-s 20]
                                     [--spread-events 500000]

Pre-fills a 12-partition topic with events shaped like a live stream (``make_events``:
100,000 series, Zipf-like popularity, timestamps rising over two minutes of event time),
then runs ``turnstile speed --stop-at-end`` (recovery on) as 1 worker, as a 2-process
cluster of 1 worker each, and into a plain (non-hypertable) metrics_1m; each is timed from
process start to exit and from the dataflow's start (after Python's imports) to exit.
The baseline, in the same run and interleaved with the flows, is a plain confluent-kafka
consumer that only consumes and decodes the same records. A second, labelled figure runs
the pathological case (uniform series over ten minutes: a window per event). Freshness: a
steady 20,000 events/s load while the flow runs; per 100 ms slice, the time from the
producer's ack to the slice being fully counted in metrics_1m. Uses
TURNSTILE_KAFKA_BOOTSTRAP / TURNSTILE_DATABASE_URL when set, else starts a private stack.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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

from schemas.event import EventRecord
from schemas.migrate import migrate
from schemas.records import KeyPartitioner, decode_metric_arrays, encode_event_records
from schemas.settings import KafkaSettings, StateSettings
from speed_layer.runner import recovery_config
from speed_layer.settings import SpeedSettings
from turnstile_cli.stack import LocalStack, StackConfig, ensure_topic, free_ports

RESULTS = Path(__file__).resolve().parent / "results" / "speed_layer.json"
PARTITIONS = 12
ENDPOINTS = [f"/v1/resource{i}/{{id}}" for i in range(10)]
COMBOS = [("GET", 200), ("GET", 404), ("POST", 201), ("POST", 500), ("DELETE", 302)]


SERIES = 2_000 * len(ENDPOINTS) * len(COMBOS)  # 100,000 distinct series
LIVE_SECONDS = 120
ZIPF_S = 1.1
SPREAD_MINUTES = 10


def make_events(n: int, seed: int, start_us: int, *, shape: str = "live") -> list[EventRecord]:
    """Events over 100,000 series: 2,000 (project, api_key) × 10 endpoints × 5 method/status.

    ``live``: like a live stream at a high rate: timestamps rise steadily over
    ``LIVE_SECONDS`` of event time (±2 s of jitter, as agents batch), and series popularity
    is Zipf-like (exponent ``ZIPF_S`` over the series' ranks, ranks shuffled), so popular
    series have many events per minute. ``spread``: the pathological case, uniform series
    over ``SPREAD_MINUTES`` minutes, where almost every event opens its own window.
    """
    rng = np.random.default_rng(seed)
    if shape == "live":
        weights = 1.0 / np.arange(1, SERIES + 1) ** ZIPF_S
        series = rng.permutation(SERIES)[
            rng.choice(SERIES, n, p=weights / weights.sum())]
        span_us = LIVE_SECONDS * 1_000_000
    else:
        series = rng.integers(0, SERIES, n)
        span_us = SPREAD_MINUTES * 60_000_000
    pair, rest = np.divmod(series, len(ENDPOINTS) * len(COMBOS))
    endpoint, combo = np.divmod(rest, len(COMBOS))
    ts = start_us + np.sort(rng.integers(0, span_us, n)) + rng.integers(
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
    """Format v2 records as the gateway makes them: per HTTP batch of ``batch`` events, one
    record per partition the batch touches, produced to that partition; lz4, as the
    gateway publishes by default (ingest_gateway/settings.py)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "compression.type": "lz4", "enable.idempotence": True,
                         "queue.buffering.max.messages": 1_000_000})
    partitioner = KeyPartitioner(PARTITIONS)
    for start in range(0, len(records), batch):
        for rec in encode_event_records(records[start:start + batch], batch_id=f"b{start}",
                                        partitioner=partitioner):
            while True:
                try:
                    producer.produce(topic, rec.value, rec.key, rec.partition)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("prefill not delivered")


def baseline(bootstrap: str, topic: str, n: int) -> float:
    """Plain Python consumer: consume + decode every v2 record (the aggregation columns, as
    the speed layer decodes them), no aggregation."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bl-{uuid.uuid4()}",
                         "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                         "max.partition.fetch.bytes": 16 << 20})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = 0
    started = time.perf_counter()
    while seen < n:
        msgs = consumer.consume(200, 1.0)  # v2 records: ~80 events each here
        values = [m.value() for m in msgs if m.error() is None]
        if values:
            arrays, _ = decode_metric_arrays(values)
            seen += len(arrays)
    elapsed = time.perf_counter() - started
    consumer.close()
    return n / elapsed


def stage_profile(bootstrap: str, topic: str, n: int, poll_records: int = 100,
                  emit_every_polls: int = 25) -> dict[str, float]:
    """CPU seconds per million events of each in-process stage of the speed layer, on the
    same records: Kafka consume (records already fetched), decode, windows, emit, COPY
    payload. No PostgreSQL: what the dataflow thread and the writer thread each pay."""
    from speed_layer.decode import decode_poll
    from speed_layer.items import Emission
    from speed_layer.sink import metrics_csv
    from speed_layer.windows import ShardWindows

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sp-{uuid.uuid4()}",
                         "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                         "max.partition.fetch.bytes": 16 << 20})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    spent = dict.fromkeys(("consume", "decode", "windows_add", "emit", "copy_csv"), 0.0)
    shards: dict[int, ShardWindows] = {}
    seen, polls, payload_bytes = 0, 0, 0
    while seen < n:
        t0 = time.process_time()
        msgs = [m for m in consumer.consume(poll_records, 1.0) if m.error() is None]
        t1 = time.process_time()
        spent["consume"] += t1 - t0
        by_part: dict[int, list] = {}
        for m in msgs:  # one step per record (~80 events), as the source's comprehensions
            by_part.setdefault(m.partition() or 0, []).append(m)
        for part, ms in by_part.items():
            t0 = time.process_time()
            batch = decode_poll(topic=topic, partition=part,
                                values=[m.value() or b"" for m in ms], keys=[None] * len(ms),
                                offsets=[m.offset() or 0 for m in ms],
                                produced_ms=[m.timestamp()[1] for m in ms])
            t1 = time.process_time()
            w = shards.setdefault(part, ShardWindows(allowed_lateness_us=300_000_000,
                                                     compression=200))
            w.add(batch)
            t2 = time.process_time()
            spent["decode"] += t1 - t0
            spent["windows_add"] += t2 - t1
            seen += len(batch)
        polls += 1
        if polls % emit_every_polls == 0 or seen >= n:
            for part, w in shards.items():
                t0 = time.process_time()
                rows = w.emit()
                t1 = time.process_time()
                payload, _ = metrics_csv([Emission(part, metrics=rows)])
                t2 = time.process_time()
                spent["emit"] += t1 - t0
                spent["copy_csv"] += t2 - t1
                payload_bytes += len(payload)
    consumer.close()
    out = {f"{k}_cpu_s_per_million_events": round(v * 1e6 / seen, 3) for k, v in spent.items()}
    out["total_cpu_s_per_million_events"] = round(sum(spent.values()) * 1e6 / seen, 3)
    out["copy_payload_bytes_per_event"] = round(payload_bytes / seen, 1)
    return out


def flow_env(bootstrap: str, dsn: str, topic: str, state: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TURNSTILE_KAFKA_BOOTSTRAP": bootstrap, "TURNSTILE_DATABASE_URL": dsn,
            "TURNSTILE_KAFKA_EVENTS_TOPIC": topic, "TURNSTILE_STATE_DIR": str(state),
            "TURNSTILE_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dlq", **extra}


def _started_at(log: Path) -> float:
    """When the dataflow itself started (after Python's imports), from the runner's log."""
    for line in log.read_text(errors="replace").splitlines():
        match = re.search(r"dataflow starting at (\d+\.\d+)", line)
        if match:
            return float(match.group(1))
    raise RuntimeError(f"no start line in {log}")


def _watch_rss(procs: list[subprocess.Popen[bytes]], peak: list[float]) -> None:
    """Peak RSS (VmHWM) of each process while it runs. Not wait4's ru_maxrss: that counts
    the RSS of this (large) parent copied at fork time."""
    while any(p.poll() is None for p in procs):
        for i, proc in enumerate(procs):
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                peak[i] = max(peak[i], int(match.group(1)) / 1024)
        time.sleep(0.1)


def run_flow(bootstrap: str, dsn: str, topic: str, workers: int, n: int, *,
             processes: int = 1, table: str = "public.metrics_1m",
             **extra_env: str) -> dict[str, float]:
    """One run; ``processes`` > 1 makes a Bytewax cluster of that many 1-worker processes.

    ``table`` is where the flow's ``metrics_1m`` resolves (see ``plain_table``)."""
    state = Path(tempfile.mkdtemp(prefix="speed-bench-"))
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"TRUNCATE {table}")
    flow_dsn = dsn if table == "public.metrics_1m" else _with_search_path(dsn, PLAIN_SCHEMA)
    env = flow_env(bootstrap, flow_dsn, topic, state, **extra_env)
    # The recovery store is made once, before the processes share it.
    recovery_config(SpeedSettings(state=StateSettings(state_dir=state)))
    command = [sys.executable, "-m", "turnstile_cli.main", "speed", "--stop-at-end"]
    if processes > 1:
        addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(processes))
        commands = [[*command, "-w", "1", "-i", str(i), "-a", addresses]
                    for i in range(processes)]
    else:
        commands = [[*command, "-w", str(workers)]]
    logs = [state / f"flow-{i}.log" for i in range(len(commands))]
    started = time.time()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL,
                              stderr=log.open("wb"))
             for c, log in zip(commands, logs, strict=True)]
    rss = [0.0] * len(procs)
    watcher = threading.Thread(target=_watch_rss, args=(procs, rss), daemon=True)
    watcher.start()
    codes = [proc.wait() for proc in procs]
    watcher.join()
    ended = time.time()
    flow_started = min(_started_at(log) for log in logs)
    shutil.rmtree(state, ignore_errors=True)
    if any(codes):
        raise RuntimeError(f"speed layer exited with {codes}")
    with psycopg.connect(dsn, autocommit=True) as db:
        counted = db.execute(
            f"SELECT sum(request_count), count(*) FROM {table}").fetchone()  # noqa: S608
    if counted is None or counted[0] != n:
        raise RuntimeError(f"metrics_1m counts {counted}, expected {n}")
    return {"seconds": ended - started, "events_per_s": n / (ended - started),
            "flow_seconds": ended - flow_started,
            "flow_events_per_s": n / (ended - flow_started),
            "peak_rss_mb": max(rss), "rows": float(counted[1])}


PLAIN_SCHEMA = "bench_plain"


def plain_table(dsn: str) -> str:
    """A plain (non-hypertable) ``metrics_1m`` of the same columns and key in a scratch
    schema; a flow whose search_path starts there upserts into it (everything else, the
    late-event and dead-letter tables, stays in public). For issue 12's upsert cost."""
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"DROP SCHEMA IF EXISTS {PLAIN_SCHEMA} CASCADE")
        db.execute(f"CREATE SCHEMA {PLAIN_SCHEMA}")
        db.execute(f"CREATE TABLE {PLAIN_SCHEMA}.metrics_1m (LIKE public.metrics_1m"
                   " INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)")
        hyper = db.execute("SELECT count(*) FROM timescaledb_information.hypertables"
                           " WHERE hypertable_schema = %s", (PLAIN_SCHEMA,)).fetchone()
        if hyper is None or hyper[0]:
            raise RuntimeError("the scratch metrics_1m became a hypertable")
    return f"{PLAIN_SCHEMA}.metrics_1m"


def _with_search_path(dsn: str, schema: str) -> str:
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options=-csearch_path%3D{schema},public"


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
                                status_code=200, latency_ms=12.0, api_key=f"c{j % 40}",
                                batch_id=f"fresh-{i}", batch_index=j)
                    for j in range(slice_n)]

            def acked_cb(err: object, _msg: object, project: str = project) -> None:
                if err is None:
                    acked[project] = time.time()

            for rec in encode_event_records(recs, batch_id=f"fresh-{i}",
                                            partitioner=PARTITIONS):
                producer.produce(topic, rec.value, rec.key, rec.partition,
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


CONFIGS = {
    # label: (workers per process, processes)
    "1 worker": (1, 1),
    "2 workers (2 processes)": (1, 2),
}
PLAIN = "1 worker, plain metrics_1m table (not a hypertable)"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--freshness-s", type=float, default=20.0)
    parser.add_argument("--spread-events", type=int, default=500_000,
                        help="events of the pathological spread case (0: skip it)")
    parser.add_argument("--poll-sweep", default="",
                        help="comma-separated poll_max_records values, 1 worker, 1 run each")
    args = parser.parse_args()
    external = os.environ.get("TURNSTILE_KAFKA_BOOTSTRAP") and os.environ.get(
        "TURNSTILE_DATABASE_URL")
    root = Path(tempfile.mkdtemp(prefix="speed-bench-stack-"))
    root.chmod(0o755)
    stack = None
    load_before = _load()
    if external:
        bootstrap = os.environ["TURNSTILE_KAFKA_BOOTSTRAP"]
        dsn = os.environ["TURNSTILE_DATABASE_URL"]
    else:
        k, c, p = free_ports(3)
        stack = LocalStack(StackConfig(state_dir=root, kafka_port=k, kafka_controller_port=c,
                                       postgres_port=p))
        stack.up(KafkaSettings(bootstrap=stack.kafka_bootstrap), timeout=90.0)
        bootstrap, dsn = stack.kafka_bootstrap, stack.database_url
    spread: dict[str, float] = {}
    plain_error = ""
    try:
        migrate(dsn)
        start_us = int(time.time() * 1e6) - 3_600_000_000
        topic = f"bench.speed.{uuid.uuid4().hex[:8]}"
        ensure_topic(bootstrap, topic, PARTITIONS)
        t = time.perf_counter()
        records = make_events(args.events, seed=1, start_us=start_us, shape="live")
        produce(bootstrap, topic, records)
        del records
        prefill_s = time.perf_counter() - t
        base: list[float] = []
        flows: dict[str, list[dict[str, float]]] = {label: [] for label in CONFIGS}
        plain_runs: list[dict[str, float]] = []
        try:
            plain: str | None = plain_table(dsn)
        except Exception as exc:
            plain, plain_error = None, repr(exc)
            print(f"plain table not made: {plain_error}")
        try:
            profile = stage_profile(bootstrap, topic, args.events)
        except Exception as exc:  # a figure, not the benchmark's point: record why
            profile = {"error": repr(exc)}
        for _ in range(args.runs):  # interleaved, so a busy spell hits every figure alike
            base.append(baseline(bootstrap, topic, args.events))
            for label, (workers, processes) in CONFIGS.items():
                flows[label].append(run_flow(bootstrap, dsn, topic, workers, args.events,
                                             processes=processes))
            if plain is not None:
                plain_runs.append(run_flow(bootstrap, dsn, topic, 1, args.events,
                                           table=plain))
        sweep: dict[int, dict[str, float]] = {}
        for value in [int(v) for v in args.poll_sweep.split(",") if v]:
            try:
                sweep[value] = run_flow(bootstrap, dsn, topic, 1, args.events,
                                        TURNSTILE_SPEED_POLL_MAX_RECORDS=str(value))
            except Exception as exc:
                sweep[value] = {"events_per_s": -1, "flow_events_per_s": -1,
                                "peak_rss_mb": -1}
                print(f"poll sweep {value} failed: {exc!r}")
        if args.spread_events:
            spread_topic = f"bench.spread.{uuid.uuid4().hex[:8]}"
            ensure_topic(bootstrap, spread_topic, PARTITIONS)
            records = make_events(args.spread_events, seed=2, start_us=start_us,
                                  shape="spread")
            produce(bootstrap, spread_topic, records)
            del records
            spread_base = baseline(bootstrap, spread_topic, args.spread_events)
            spread = run_flow(bootstrap, dsn, spread_topic, 1, args.spread_events)
            spread["baseline_events_per_s"] = spread_base
        fresh = freshness(bootstrap, dsn, args.freshness_s) if args.freshness_s > 0 else {}
    finally:
        if stack is not None:
            stack.down(timeout=30.0)
        shutil.rmtree(root, ignore_errors=True)
    load_after = _load()

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    base_eps = statistics.median(base)
    result = {
        "command": "python -m benchmarks.speed_layer " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "memory_gb": round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
            "load_average_1_5_15_before": load_before, "load_average_1_5_15_after": load_after},
        "events": args.events, "series": SERIES, "partitions": PARTITIONS, "runs": args.runs,
        "event_shape": (
            f"live: timestamps rising over {LIVE_SECONDS} s of event time (+-2 s jitter), "
            f"series drawn Zipf-like (exponent {ZIPF_S}) over {SERIES:,} series"),
        "prefill_seconds": round(prefill_s, 1),
        "baseline_consume_decode_events_per_s": round(base_eps),
        "baseline_runs_events_per_s": [round(b) for b in base],
        "workers": {
            label: {
                "events_per_s": round(med(r, "events_per_s")),
                "events_per_s_per_worker": round(med(r, "events_per_s") / (w * p)),
                "seconds": round(med(r, "seconds"), 2),
                "ratio_vs_baseline": round(med(r, "events_per_s") / base_eps, 3),
                "flow_events_per_s": round(med(r, "flow_events_per_s")),
                "flow_seconds": round(med(r, "flow_seconds"), 2),
                "flow_ratio_vs_baseline": round(med(r, "flow_events_per_s") / base_eps, 3),
                "peak_rss_mb": round(max(x["peak_rss_mb"] for x in r), 1),
                "metrics_1m_rows": int(med(r, "rows")),
                "runs_events_per_s": [round(x["events_per_s"]) for x in r],
            } for (label, r), (w, p) in zip(flows.items(), CONFIGS.values(), strict=True)
        },
        "upsert_cost_hypertable_vs_plain_table": {
            "plain_table_events_per_s": round(med(plain_runs, "events_per_s")),
            "plain_table_flow_events_per_s": round(med(plain_runs, "flow_events_per_s")),
            "plain_table_runs_events_per_s": [round(x["events_per_s"]) for x in plain_runs],
            "hypertable_slower_by": round(1 - med(flows["1 worker"], "events_per_s")
                                          / med(plain_runs, "events_per_s"), 3),
            "how": f"the same 1-worker run with metrics_1m resolved (search_path) to a plain "
                   f"table {plain} of the same columns and primary key; the hypertable "
                   "carries the continuous aggregates' invalidation triggers",
        } if plain_runs else {"error": plain_error},
        "stage_profile_in_process": profile,
        "poll_max_records_sweep_1_worker": {
            str(k): {"events_per_s": round(v["events_per_s"]),
                     "flow_events_per_s": round(v["flow_events_per_s"]),
                     "peak_rss_mb": round(v["peak_rss_mb"], 1)} for k, v in sweep.items()},
        "pathological_spread_case": {
            "shape": f"uniform over {SERIES:,} series and {SPREAD_MINUTES} minutes: almost "
                     "every event opens its own window (1 worker, 1 run)",
            "events": args.spread_events,
            **{k: round(v, 2) for k, v in spread.items()},
        } if spread else {},
        "freshness_20k_events_per_s": fresh,
        "notes": "Other engineers' tests and benchmarks were running on the same 2 cores "
                 "meanwhile (see the load averages); compare figures within this run. "
                 "seconds = process start to exit (includes Python start-up, ~1-2 s here "
                 "without .pyc caching, and the final flush); flow_seconds = from the "
                 "dataflow starting (after imports) to exit. Recovery snapshots on (every "
                 "10 s). '2 processes' = a 2-process Bytewax cluster of 1 worker each; "
                 "Baseline = one plain confluent-kafka consumer "
                 "decoding the same v2 records with schemas.records.decode_metric_arrays, "
                 "same topic, same run. Prefill: v2 records as the gateway makes them "
                 "(HTTP batches of 1,000 events, one record per partition touched).",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measure':<52}{'value':>14}")
    print(f"{'baseline consume+decode events/s':<52}{base_eps:>14,.0f}")
    for label, r in result["workers"].items():
        print(f"{label + ' events/s (process start..exit)':<52}{r['events_per_s']:>14,}")
        print(f"{label + ' events/s (flow start..exit)':<52}{r['flow_events_per_s']:>14,}")
        print(f"{label + ' ratio vs baseline':<52}{r['ratio_vs_baseline']:>14}")
        print(f"{label + ' peak RSS MB':<52}{r['peak_rss_mb']:>14}")
    up = result["upsert_cost_hypertable_vs_plain_table"]
    for k, v in up.items():  # type: ignore[attr-defined]
        print(f"{'upsert cost ' + k:<52}{v!s:>14}")
    for k, v in result["poll_max_records_sweep_1_worker"].items():
        print(f"{'poll_max_records ' + k + ' events/s':<52}{v['events_per_s']:>14,}")
    if spread:
        print(f"{'pathological spread, 1 worker events/s':<52}{spread['events_per_s']:>14,.0f}")
        print(f"{'pathological spread, metrics_1m rows':<52}{spread['rows']:>14,.0f}")
    for k, v in fresh.items():
        print(f"{'freshness ' + k:<52}{v:>14,.1f}")
    print(f"machine load average before {load_before}, after {load_after}")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
