"""Batch layer fixtures: a producer helper, writer settings, a real local S3 server (moto)."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from pydantic import SecretStr

from batch_layer.lake import LAKE_ARROW_SCHEMA, Lake, committed_files
from batch_layer.lake_writer import LakeWriter
from batch_layer.settings import BatchSettings
from schemas.event import EventRecord
from schemas.lake import LakeSettings
from schemas.settings import DatabaseSettings, KafkaSettings
from tests.records import gateway_records


@dataclass
class Produced:
    events: int  # events sent, copies included
    records: int  # Kafka records (format v2: one per partition an HTTP batch touches)
    duplicated_batches: int
    duplicated_events: list[EventRecord]


def produce(bootstrap: str, topic: str, records: Sequence[EventRecord], *, batch_size: int = 50,
            duplicate_rate: float = 0.0, seed: int = 0) -> Produced:
    """Publish like the gateway: HTTP batches of ``batch_size`` events, each as v2 records
    (one per partition it touches) to their partitions; a fraction of batches is published
    twice with the same batch id (a retried batch)."""
    rng = random.Random(seed)
    n_batches = (len(records) + batch_size - 1) // batch_size
    twice = set(rng.sample(range(n_batches), round(n_batches * duplicate_rate)))
    duplicated: list[EventRecord] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5, "compression.type": "lz4"})
    partitions = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
    sent = events = dups = 0
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        v2 = gateway_records(batch, partitions=partitions)
        times = 2 if start // batch_size in twice else 1
        dups += times - 1
        if times == 2:
            duplicated.extend(batch)
        for _ in range(times):
            for r in v2:
                producer.produce(topic, value=r.value, key=r.key, partition=r.partition)
                sent += 1
            events += len(batch)
            producer.poll(0)
    assert producer.flush(30) == 0
    return Produced(events=events, records=sent, duplicated_batches=dups,
                    duplicated_events=duplicated)


def writer_settings(stack, topic: str, lake_uri: str, *, s3: S3Server | None = None,
                    **overrides) -> BatchSettings:
    """Settings of a writer on ``topic`` into ``lake_uri`` (on the ``s3`` server if given)."""
    lake = LakeSettings(uri=lake_uri) if s3 is None else LakeSettings(
        uri=lake_uri, s3_endpoint_url=s3.endpoint_url, s3_access_key=SecretStr("test"),
        s3_secret_key=SecretStr("test"))
    values = dict(
        lake=lake, group_id=f"lake-{uuid.uuid4().hex[:8]}", roll_bytes=256 * 1024,
        roll_seconds=0.3, consume_timeout_s=0.1, consume_batch=2000,
        kafka=KafkaSettings(bootstrap=stack.kafka_bootstrap, events_topic=topic),
        database=DatabaseSettings(url=stack.database_url), duckdb_threads=1,
    )
    values.update(overrides)
    return BatchSettings(**values)


def lag(settings: BatchSettings, partitions: int) -> int:
    """Messages of the topic not yet committed by the writer's group."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap,
                         "group.id": settings.group_id, "enable.auto.commit": False})
    try:
        return _lag(consumer, settings, partitions)
    except KafkaException:  # coordinator moving or loading: not known yet
        return -1
    finally:
        consumer.close()


def _lag(consumer: Consumer, settings: BatchSettings, partitions: int) -> int:
    tps = [TopicPartition(settings.kafka.events_topic, p) for p in range(partitions)]
    total = 0
    for tp in consumer.committed(tps, timeout=10):
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        total += high - (tp.offset if tp.offset >= 0 else low)
    return total


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def drain(settings: BatchSettings, lake: Lake, partitions: int, timeout: float = 60) -> LakeWriter:
    """Run a writer in a thread until the whole topic is committed, then stop it."""
    writer = LakeWriter(settings, lake)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            writer.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        wait_for(lambda: errors or lag(settings, partitions) == 0, timeout, "writer to drain")
    finally:
        writer.stop()
        thread.join(30)
    if errors:
        raise errors[0]
    return writer


def lake_table(lake: Lake, days):
    files = [f for d in days for f in committed_files(lake, d)]
    return pads.dataset(files, filesystem=lake.fs, format="parquet",
                        schema=LAKE_ARROW_SCHEMA).to_table()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible HTTP server (moto's server mode) on 127.0.0.1, as a process."""
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        fs = pafs.S3FileSystem(access_key="test", secret_key="test", region="us-east-1",
                               endpoint_override=f"127.0.0.1:{port}", scheme="http",
                               allow_bucket_creation=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                fs.create_dir("turnstile-lake")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield S3Server(endpoint_url=f"http://127.0.0.1:{port}", bucket="turnstile-lake")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
