"""Lake writer throughput from a pre-filled topic, and Parquet bytes per event vs JSON.

Starts a throw-away Kafka broker on free ports (or uses TURNSTILE_KAFKA_BOOTSTRAP), fills a
12-partition topic with N events as the gateway publishes them (format v2 records: per
HTTP batch of 1,000 events, one record per partition touched), then times the lake writer
draining it into a local lake (default roll settings: everything rolled and committed at
the end). Baseline in the same run: a bare confluent-kafka consumer of the same records
that only decodes them (every column, ``schemas.records.decode_records``). JSON bytes per
event: the same events as one JSON object each. Medians of several runs.

    python -m benchmarks.lake_writer [--events N] [--runs R]
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
import threading
import time
import uuid
from pathlib import Path

import msgspec
from confluent_kafka import Consumer, Producer

from batch_layer.lake import open_lake
from batch_layer.lake_writer import LakeWriter
from batch_layer.settings import BatchSettings
from schemas.lake import LakeSettings
from schemas.records import KeyPartitioner, decode_records, encode_event_records
from schemas.settings import KafkaSettings
from tests.unit.batch_layer.fixtures import make_events
from turnstile_cli.stack import KafkaBroker, ensure_topic, free_ports

RESULTS = Path(__file__).resolve().parent / "results" / "lake_writer.json"
PARTITIONS = 12


def fill(bootstrap: str, topic: str, n: int) -> int:
    """Produce n events as the gateway does (format v2: per HTTP batch of 1,000 events one
    record per partition touched, to that partition); returns the bytes of the same events
    as JSON (one object per event, the fields of ``EventRecord``)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all",
                         "enable.idempotence": True, "compression.type": "lz4",
                         "batch.size": 1_000_000, "queue.buffering.max.messages": 2_000_000})
    partitioner = KeyPartitioner(PARTITIONS)
    json_bytes = 0
    step = 50_000
    for start in range(0, n, step):
        records = make_events(min(step, n - start), seed=start, projects=(
            "acme", "globex", "initech", "umbrella"), keys=1000)
        for first in range(0, len(records), 1000):  # gateway batches of 1,000
            chunk = records[first:first + 1000]
            json_bytes += len(msgspec.json.encode(chunk)) - len(chunk) - 1  # less "[", ",", "]"
            for rec in encode_event_records(chunk, batch_id=uuid.uuid4().hex,
                                            partitioner=partitioner):
                while True:
                    try:
                        producer.produce(topic, rec.value, rec.key, rec.partition)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)
        producer.flush()
    return json_bytes


def bare_consume(bootstrap: str, topic: str, n: int) -> float:
    """A bare consumer of the same records that decodes them (every column) and no more."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 64 * 1024 * 1024})
    consumer.subscribe([topic])
    got = 0
    started = None
    while got < n:
        batch = consumer.consume(1_000, 1.0)
        if batch and started is None:
            started = time.perf_counter()
        values = [m.value() for m in batch if m.error() is None]
        if values:
            got += decode_records(values).table.num_rows
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return n / elapsed


def run_writer(bootstrap: str, topic: str, n: int, lake_dir: Path) -> tuple[float, int, int]:
    """Drain the topic into a fresh lake; returns (events/s, parquet bytes, files)."""
    settings = BatchSettings(lake=LakeSettings(uri=str(lake_dir)), group_id=uuid.uuid4().hex,
                             kafka=KafkaSettings(bootstrap=bootstrap, events_topic=topic))
    writer = LakeWriter(settings, open_lake(settings))
    started = time.perf_counter()
    thread = threading.Thread(target=writer.run)
    thread.start()
    while writer.stats.consumed < n:
        time.sleep(0.01)
    writer.stop()
    thread.join()
    elapsed = time.perf_counter() - started
    if writer.stats.events != n:
        raise SystemExit(f"writer wrote {writer.stats.events} of {n} events")
    files = list(lake_dir.rglob("*.parquet"))
    return n / elapsed, sum(f.stat().st_size for f in files), len(files)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="turnstile-bench-lake-"))
    broker = None
    bootstrap = os.environ.get("TURNSTILE_KAFKA_BOOTSTRAP")
    try:
        if not bootstrap:
            port, cport = free_ports(2)
            broker = KafkaBroker(state, port, cport)
            broker.start(timeout=90)
            bootstrap = broker.bootstrap
        topic = f"bench.lake.{uuid.uuid4().hex[:8]}"
        ensure_topic(bootstrap, topic, PARTITIONS)
        json_bytes = fill(bootstrap, topic, args.events)
        baseline, writer_rates, sizes, file_counts = [], [], [], []
        for i in range(args.runs):
            baseline.append(bare_consume(bootstrap, topic, args.events))
            rate, size, files = run_writer(bootstrap, topic, args.events, state / f"lake-{i}")
            writer_rates.append(rate)
            sizes.append(size)
            file_counts.append(files)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(state, ignore_errors=True)
    parquet_bytes = statistics.median(sizes)
    result = {
        "benchmark": "lake_writer",
        "command": "python -m benchmarks.lake_writer " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "memory_gib": round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version()},
        "events": args.events, "partitions": PARTITIONS, "runs": args.runs,
        "lake_writer_events_per_s": round(statistics.median(writer_rates)),
        "baseline_bare_consume_events_per_s": round(statistics.median(baseline)),
        "ratio_vs_baseline": round(statistics.median(writer_rates)
                                   / statistics.median(baseline), 3),
        "json_bytes_per_event": round(json_bytes / args.events, 1),
        "parquet_bytes_per_event": round(parquet_bytes / args.events, 1),
        "compression_ratio_json_to_parquet": round(json_bytes / parquet_bytes, 1),
        "files_per_run": statistics.median(file_counts),
        "all_lake_writer_events_per_s": [round(x) for x in writer_rates],
        "all_baseline_events_per_s": [round(x) for x in baseline],
        "notes": "format v2 records; baseline = a bare consumer decoding the same records "
                 "(all columns) and nothing else, interleaved with the writer runs.",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'figure':<40}{'value':>14}")
    for name in ("events", "lake_writer_events_per_s", "baseline_bare_consume_events_per_s",
                 "ratio_vs_baseline", "json_bytes_per_event", "parquet_bytes_per_event",
                 "compression_ratio_json_to_parquet", "files_per_run"):
        print(f"{name:<40}{result[name]:>14}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
