"""Record format v2 vs v1: encode, decode, bytes per event, and a real broker's throughput.

One bounded command (about two minutes on 2 busy cores):

    python -m benchmarks.record_format [--broker-events N] [--runs R]

Realistic HTTP batches (one project, Zipf api_keys over 100,000 consumers, route
templates, paths with ids, a few user agents, 10 % tagged) of 1,000 events. Figures are
medians of ``--runs`` repetitions; v1 (one JSON record per event, ``schemas.codec``) is
measured in the same run as the baseline. The broker is started here on free ports in a
temporary folder (``turnstile_cli.stack.KafkaBroker``) and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import confluent_kafka
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.v1_codec import decode_metric_columns, decode_records, encode_records
from schemas.codec import record_key
from schemas.event import EventRecord
from schemas.records import (
    CANONICAL_PREFIX,
    KeyPartitioner,
    decode_metric_arrays,
    encode_columns,
    encode_event_records,
    event_record_columns,
)
from schemas.records import decode_records as decode_v2
from schemas.records.schema import EVENT_RECORD_V2_SCHEMA
from turnstile_cli.stack import KafkaBroker, ensure_topic, free_ports

RESULTS = Path(__file__).resolve().parent / "results" / "record_format.json"
PARTITIONS = 12
BATCH = 1000
ENDPOINTS = ["/v1/search", "/v1/users/{id}", "/v1/orders/{id}", "/v1/orders", "/health",
             "/v1/items/{id}/reviews", "/v1/carts/{id}", "/v1/login"]
AGENTS = ([f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/{v}.0 Safari/537.36"
           for v in range(120, 132)] + ["python-httpx/0.27.0", "curl/8.5.0", "okhttp/4.12.0"])


def http_batch(rng: random.Random, n: int, keys: int = 100_000) -> tuple[str, list[EventRecord]]:
    batch_id = uuid.UUID(int=rng.getrandbits(128)).hex
    start = 1_764_000_000_000_000 + rng.randrange(10**9)
    out = []
    for i in range(n):
        endpoint = rng.choice(ENDPOINTS)
        out.append(EventRecord(
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex, project_id="proj_7f3a9c21",
            timestamp_us=start + i * 997, received_at_us=start + 2_000_000,
            method=rng.choice(["GET", "GET", "GET", "POST", "PUT", "DELETE"]),
            path=endpoint.replace("{id}", str(rng.randrange(1_000_000))), endpoint=endpoint,
            status_code=rng.choice([200] * 8 + [201, 204, 400, 404, 429, 500, 503]),
            latency_ms=round(rng.lognormvariate(3, 1), 3), request_bytes=rng.randrange(4000),
            response_bytes=rng.randrange(80_000),
            api_key=f"cust_{min(int(rng.paretovariate(0.9)), keys):06d}",
            ip=f"198.51.{rng.randrange(256)}.{rng.randrange(256)}",
            user_agent=rng.choice(AGENTS), country=rng.choice(["DE", "US", "FR", "JP", None]),
            function=None, tags={"region": "eu-west-1"} if rng.random() < 0.1 else None,
            batch_id=batch_id, batch_index=i,
        ))
    return batch_id, out


def per_key(keys: Sequence[bytes]) -> np.ndarray:
    """A 'partitioner' that gives every distinct key its own record (per key grouping)."""
    return np.arange(len(keys), dtype=np.int32)


def timed(fn: Callable[[], Any], runs: int) -> float:
    """Median CPU seconds of ``runs`` calls (after one warm-up).

    CPU time of this process, not wall time: on a machine shared with other jobs the
    wall clock mostly measures the wait for a core.
    """
    fn()
    times = []
    for _ in range(runs):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return statistics.median(times)


def us_per_event(seconds: float, events: int) -> float:
    return round(seconds / events * 1e6, 3)


def compressed(data: bytes, codec: str) -> int:
    level = 3 if codec == "zstd" else None  # librdkafka's default zstd level
    return len(pa.Codec(codec, compression_level=level).compress(data, asbytes=True))


def codec_figures(batches: list[tuple[str, list[EventRecord]]], runs: int) -> dict[str, Any]:
    events = sum(len(b) for _, b in batches)
    part = KeyPartitioner(PARTITIONS)
    columns = [(bid, {k: (v.dictionary_decode() if pa.types.is_dictionary(v.type) else v)
                      for k, v in event_record_columns(b).items()}) for bid, b in batches]
    v1_values = [encode_records(b) for _, b in batches]
    v2 = [encode_event_records(b, batch_id=bid, partitioner=part) for bid, b in batches]
    v2_key = [encode_event_records(b, batch_id=bid, partitioner=per_key) for bid, b in batches]
    v2_values = [r.value for rs in v2 for r in rs]
    v2_key_values = [r.value for rs in v2_key for r in rs]
    flat_v1 = [v for vs in v1_values for v in vs]

    fig: dict[str, Any] = {"events": events, "http_batch_events": BATCH,
                           "partitions": PARTITIONS}
    fig["v1_encode_cpu_us_per_event"] = us_per_event(timed(
        lambda: [encode_records(b) for _, b in batches], runs), events)
    fig["v2_encode_from_event_records_cpu_us_per_event"] = us_per_event(timed(
        lambda: [encode_event_records(b, batch_id=bid, partitioner=part)
                 for bid, b in batches], runs), events)
    fig["v2_encode_from_columns_cpu_us_per_event"] = us_per_event(timed(
        lambda: [encode_columns(c, batch_id=bid, partitioner=part) for bid, c in columns],
        runs), events)
    fig["v2_columns_from_event_records_cpu_us_per_event"] = us_per_event(timed(
        lambda: [event_record_columns(b) for _, b in batches], runs), events)
    fig["v2_per_key_encode_cpu_us_per_event"] = us_per_event(timed(
        lambda: [encode_event_records(b, batch_id=bid, partitioner=per_key)
                 for bid, b in batches], runs), events)

    fig["v1_decode_metric_columns_cpu_us_per_event"] = us_per_event(timed(
        lambda: decode_metric_columns(flat_v1), runs), events)
    fig["v1_decode_records_cpu_us_per_event"] = us_per_event(timed(
        lambda: decode_records(flat_v1), runs), events)
    fig["v2_decode_metric_arrays_cpu_us_per_event"] = us_per_event(timed(
        lambda: decode_metric_arrays(v2_values), runs), events)
    fig["v2_decode_table_cpu_us_per_event"] = us_per_event(timed(
        lambda: decode_v2(v2_values), runs), events)
    arrays, _ = decode_metric_arrays(v2_values)
    fig["v2_to_metric_columns_bridge_cpu_us_per_event"] = us_per_event(timed(
        arrays.to_metric_columns, runs), events)
    fig["v2_per_key_decode_metric_arrays_cpu_us_per_event"] = us_per_event(timed(
        lambda: decode_metric_arrays(v2_key_values), runs), events)
    fig["v2_per_key_decode_table_cpu_us_per_event"] = us_per_event(timed(
        lambda: decode_v2(v2_key_values), runs), events)

    fig["v2_records_per_http_batch"] = round(len(v2_values) / len(batches), 1)
    fig["v2_per_key_records_per_http_batch"] = round(len(v2_key_values) / len(batches), 1)
    fig["v1_json_bytes_per_event"] = round(sum(map(len, flat_v1)) / events, 1)
    fig["v2_bytes_per_event"] = round(sum(map(len, v2_values)) / events, 1)
    fig["v2_lz4_bytes_per_event"] = round(
        sum(compressed(v, "lz4") for v in v2_values) / events, 1)
    fig["v2_per_key_bytes_per_event"] = round(sum(map(len, v2_key_values)) / events, 1)
    fig["v2_per_key_lz4_bytes_per_event"] = round(
        sum(compressed(v, "lz4") for v in v2_key_values) / events, 1)
    fig.update(batch_id_variants(batches[:20], runs))
    fig.update(dictionary_variants(v2_values))
    return fig


def _ipc(table: pa.Table, schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table.cast(schema))
    return sink.getvalue().to_pybytes()


def batch_id_variants(batches: list[tuple[str, list[EventRecord]]], runs: int
                      ) -> dict[str, Any]:
    """batch_id as a one-entry dictionary column (what v2 does) vs schema metadata."""
    part = KeyPartitioner(PARTITIONS)
    column_values, meta_values = [], []
    no_id = pa.schema([f for f in EVENT_RECORD_V2_SCHEMA if f.name != "batch_id"])
    for bid, b in batches:
        for r in encode_event_records(b, batch_id=bid, partitioner=part):
            column_values.append(r.value)
            table = pa.ipc.open_stream(r.value).read_all().drop_columns(["batch_id"])
            schema = no_id.with_metadata({"turnstile.format": "2", "turnstile.batch_id": bid})
            meta_values.append(_ipc(table, schema))
    events = sum(len(b) for _, b in batches)

    eos = b"\xff\xff\xff\xff\x00\x00\x00\x00"
    cut = len(CANONICAL_PREFIX)

    def read_column() -> tuple[pa.Table, pa.ChunkedArray]:
        """Identical schema messages: splice the poll, read it in one call."""
        spliced = b"".join([CANONICAL_PREFIX, *(memoryview(v)[cut:-8] for v in column_values),
                            eos])
        table = pa.ipc.open_stream(spliced).read_all()
        return table, table.column("batch_id")

    def batch_ids(ids: list[str], rows: np.ndarray) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(
            pa.array(np.repeat(np.arange(len(ids), dtype=np.int32), rows)), pa.array(ids))

    def read_metadata() -> tuple[pa.Table, pa.DictionaryArray]:
        """Schemas differ by their metadata: one stream per record."""
        tables, ids = [], []
        for value in meta_values:
            reader = pa.ipc.open_stream(value)
            tables.append(reader.read_all())
            ids.append(reader.schema.metadata[b"turnstile.batch_id"].decode())
        rows = np.fromiter((t.num_rows for t in tables), np.int64, len(tables))
        return pa.concat_tables(tables), batch_ids(ids, rows)

    def read_metadata_spliced() -> tuple[pa.Table, pa.DictionaryArray]:
        """Best case for metadata: parse each schema message, splice the rest."""
        ids, bodies = [], []
        for value in meta_values:
            end = 8 + int.from_bytes(value[4:8], "little")
            schema = pa.ipc.read_schema(pa.py_buffer(value[:end]))
            ids.append(schema.metadata[b"turnstile.batch_id"].decode())
            bodies.append(memoryview(value)[end:-8])
        first = meta_values[0][:8 + int.from_bytes(meta_values[0][4:8], "little")]
        batches = list(pa.ipc.open_stream(b"".join([first, *bodies, eos])))
        rows = np.fromiter((b.num_rows for b in batches), np.int64, len(batches))
        return pa.Table.from_batches(batches), batch_ids(ids, rows)

    return {
        "batch_id_column_read_cpu_us_per_event": us_per_event(
            timed(read_column, runs), events),
        "batch_id_metadata_read_cpu_us_per_event": us_per_event(
            timed(read_metadata, runs), events),
        "batch_id_metadata_spliced_read_cpu_us_per_event": us_per_event(
            timed(read_metadata_spliced, runs), events),
        "batch_id_column_lz4_bytes_per_event": round(
            sum(compressed(v, "lz4") for v in column_values) / events, 2),
        "batch_id_metadata_lz4_bytes_per_event": round(
            sum(compressed(v, "lz4") for v in meta_values) / events, 2),
    }


def dictionary_variants(values: list[bytes]) -> dict[str, Any]:
    """What dictionary-encoding ``path`` and ``ip`` too would save after lz4."""
    plain = sum(compressed(v, "lz4") for v in values)
    both = 0
    fields = [pa.field(f.name, pa.dictionary(pa.int16(), pa.string()), f.nullable)
              if f.name in ("path", "ip") else f for f in EVENT_RECORD_V2_SCHEMA]
    schema = pa.schema(fields, metadata=EVENT_RECORD_V2_SCHEMA.metadata)
    for value in values:
        table = pa.ipc.open_stream(value).read_all()
        for name in ("path", "ip"):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, schema.field(name), pc.dictionary_encode(
                table.column(name)).cast(schema.field(name).type))
        both += compressed(_ipc(table, schema), "lz4")
    return {"dictionary_path_ip_lz4_saving_ratio": round(1 - both / plain, 4)}


def size_figures(rng: random.Random) -> dict[str, Any]:
    """Bytes per event of one record of N events (one key) vs N JSON records, raw/lz4/zstd."""
    out: dict[str, Any] = {}
    for n in (100, 1000, 10_000):
        bid, events = http_batch(rng, n, keys=1)
        records = encode_event_records(events, batch_id=bid, partitioner=PARTITIONS,
                                       max_bytes=10**9)
        value = b"".join(r.value for r in records)
        v1 = b"".join(encode_records(events))  # Kafka compresses a batch of records together
        for name, data in (("v2", value), ("v1", v1)):
            out[f"{name}_{n}_events_bytes_per_event"] = round(len(data) / n, 1)
            for codec in ("lz4", "zstd"):
                out[f"{name}_{n}_events_{codec}_bytes_per_event"] = round(
                    compressed(data, codec) / n, 1)
    return out


def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes, int]]
            ) -> tuple[float, float]:
    """Wall and CPU seconds (this process, librdkafka's threads included) to produce
    (idempotent, acks=all, lz4) and have every record acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "compression.type": "lz4", "linger.ms": 5,
                         "batch.size": 1_000_000, "queue.buffering.max.messages": 2_000_000,
                         "queue.buffering.max.kbytes": 2_000_000})
    produce_one = producer.produce
    started, cpu = time.perf_counter(), time.process_time()
    for key, value, partition in items:
        while True:
            try:
                produce_one(topic, value, key, partition)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(60) != 0:
        raise SystemExit("records left undelivered")
    return time.perf_counter() - started, time.process_time() - cpu


def consume(bootstrap: str, topic: str, records: int, decode: Callable[[list[bytes]], Any]
            ) -> tuple[float, float]:
    """Wall and CPU seconds for one consumer to read ``records`` (and decode each poll)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False, "fetch.max.bytes": 64 * 2**20,
                         "max.partition.fetch.bytes": 16 * 2**20})
    start = [TopicPartition(topic, p, 0) for p in range(PARTITIONS)]
    consumer.assign(start)
    while not consumer.consume(1, 1.0):  # connected and fetching: rewind, then time
        pass
    consumer.assign(start)
    got = 0
    started, cpu = time.perf_counter(), time.process_time()
    while got < records:
        values = [m.value() for m in consumer.consume(10_000, 1.0) if m.error() is None]
        decode(values)
        got += len(values)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    consumer.close()
    return elapsed, cpu


def broker_figures(batches: list[tuple[str, list[EventRecord]]], target: int, runs: int
                   ) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="turnstile-bench-format-"))
    port, controller = free_ports(2)
    broker = KafkaBroker(state, port, controller)
    part = KeyPartitioner(PARTITIONS)
    v2_items = [(r.key, r.value, r.partition) for bid, b in batches
                for r in encode_event_records(b, batch_id=bid, partitioner=part)]
    v1_items = [(record_key(e.project_id, e.api_key), v, -1) for _, b in batches
                for e, v in zip(b, encode_records(b), strict=True)]
    per_round = sum(len(b) for _, b in batches)
    v2_rounds = max(1, target // per_round)
    v1_rounds = max(1, v2_rounds // 5)  # v1 is ~10x slower: keep the run bounded
    out: dict[str, Any] = {}
    try:
        broker.start(timeout=120)
        kinds = ("produce", "consume_decode", "consume_only")
        rates: dict[str, list[float]] = {f"{v}_{k}": [] for v in ("v1", "v2") for k in kinds}
        cpus: dict[str, list[float]] = {name: [] for name in rates}
        for run in range(runs):
            for name, items, rounds, decode in (
                    ("v1", v1_items, v1_rounds, decode_metric_columns),
                    ("v2", v2_items, v2_rounds, decode_metric_arrays)):
                topic = f"bench.format.{name}.{run}.{uuid.uuid4().hex[:6]}"
                ensure_topic(broker.bootstrap, topic, PARTITIONS)
                events = per_round * rounds
                count = len(items) * rounds
                for kind, (wall, cpu) in (
                        ("produce", produce(broker.bootstrap, topic, items * rounds)),
                        ("consume_decode", consume(broker.bootstrap, topic, count, decode)),
                        ("consume_only", consume(broker.bootstrap, topic, count,
                                                 lambda v: None))):
                    rates[f"{name}_{kind}"].append(events / wall)
                    cpus[f"{name}_{kind}"].append(cpu / events * 1e6)
        for name, values in rates.items():
            out[f"{name}_events_per_s"] = round(statistics.median(values))
            out[f"{name}_client_cpu_us_per_event"] = round(statistics.median(cpus[name]), 3)
            out[f"all_{name}_events_per_s"] = [round(v) for v in values]
        for kind in kinds:
            out[f"{kind}_ratio_v2_vs_v1"] = round(
                out[f"v2_{kind}_events_per_s"] / out[f"v1_{kind}_events_per_s"], 1)
        out["broker_v1_events_per_run"] = per_round * v1_rounds
        out["broker_v2_events_per_run"] = per_round * v2_rounds
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)
    return out


def load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"load_1m": round(one, 2), "load_5m": round(five, 2), "load_15m": round(fifteen, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker-events", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = load()
    rng = random.Random(13)
    batches = [http_batch(rng, BATCH) for _ in range(40)]
    codec = codec_figures(batches, args.runs)
    sizes = size_figures(rng)
    broker = broker_figures(batches, args.broker_events, args.runs)
    result = {
        "benchmark": "record_format",
        "command": "python -m benchmarks.record_format " + " ".join(sys.argv[1:]),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30, 1),
            "python": platform.python_version(), "pyarrow": pa.__version__,
            "confluent_kafka": confluent_kafka.version()[0],
            "librdkafka": confluent_kafka.libversion()[0],
            "load_before": load_before, "load_after": load(),
            "note": "shared by several engineers' jobs; figures are medians of --runs",
        },
        "runs": args.runs,
        "seconds": round(time.perf_counter() - started, 1),
        **codec, **sizes, **broker,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'figure':<52}{'value':>14}")
    for name, value in result.items():
        if isinstance(value, int | float) and not name.startswith("all_"):
            print(f"{name:<52}{value:>14}")
    print(f"load before {load_before}, after {result['machine']['load_after']}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
