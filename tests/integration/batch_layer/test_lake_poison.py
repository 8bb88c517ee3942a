"""Records the lake must refuse, written straight to Kafka (past the gateway's check)."""

import os
import signal
import subprocess
import sys
import time

import httpx
import msgspec
from confluent_kafka import Consumer, Producer, TopicPartition

from batch_layer.lake import open_lake
from schemas.codec import record_key
from schemas.dead_letters import COMPONENT_HEADER, ORIGIN_HEADER, PROJECT_HEADER, REASON_HEADER
from schemas.records import read_record
from schemas.settings import KafkaSettings
from schemas.storable import NUL_PROBLEM
from tests.integration.batch_layer.conftest import drain, lag, lake_table, wait_for, writer_settings
from tests.records import gateway_records
from tests.unit.batch_layer.fixtures import DAY, make_events
from turnstile_cli.stack import free_ports


def produce_raw(bootstrap: str, topic: str, pairs, partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in pairs:
        producer.produce(topic, value=value, key=key, partition=partition)
    assert producer.flush(30) == 0


def poison(template, project: str, good):
    """A record whose last event has U+0000 in its path (after ``good`` events), and a
    record that is not an Arrow stream (truncated)."""
    nul = msgspec.structs.replace(template, event_id="nul-event", project_id=project,
                                  path="/v1/orders/\x00", endpoint="/v1/orders")
    key = record_key(project, template.api_key)
    (mixed,) = gateway_records([*good, nul], partitions=1)
    (whole,) = gateway_records([template], partitions=1)
    return [(key, mixed.value), (key, whole.value[:-40])]


def dlq(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "dlq-reader"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            got.extend(m for m in consumer.consume(10, 0.5) if m.error() is None)
    finally:
        consumer.close()
    return got


def test_nul_and_surrogate_records_go_to_the_dead_letters_and_the_rest_to_the_lake(
        stack, db, fresh_topic, tmp_path):
    topic = fresh_topic(partitions=1)
    kafka = KafkaSettings(bootstrap=stack.kafka_bootstrap, events_topic=topic,
                          dead_letter_topic=fresh_topic(1, prefix="lake-dlq"))
    project = f"lakepoison{topic[-6:]}"
    events = [msgspec.structs.replace(e, project_id=project)
              for e in make_events(405, seed=61, projects=("x",), keys=3)]
    bad = poison(events[0], project, events[400:])
    values = [(r.key, r.value) for start in range(0, 400, 100)
              for r in gateway_records(events[start:start + 100], partitions=1)]
    produce_raw(stack.kafka_bootstrap, topic, values[:2] + bad[:1] + values[2:] + bad[1:])
    settings = writer_settings(stack, topic, str(tmp_path / "lake"), kafka=kafka)
    lake = open_lake(settings)
    writer = drain(settings, lake, 1)
    table = lake_table(lake, [DAY])
    # The nul event's 5 neighbours in its record are kept.
    assert sorted(table.column("event_id").to_pylist()) == sorted(e.event_id for e in events)
    assert writer.stats.quarantined == 2
    got = dlq(stack.kafka_bootstrap, kafka.dead_letter_topic, 2)
    assert read_record(got[0].value()).column("event_id").to_pylist() == ["nul-event"]
    assert got[1].value() == bad[1][1]
    headers = [dict(m.headers()) for m in got]
    assert headers[0][REASON_HEADER] == f"path: {NUL_PROBLEM}".encode()
    assert headers[1][REASON_HEADER].startswith(b"not an Arrow IPC stream")
    assert [h[ORIGIN_HEADER] for h in headers] == [f"{topic}/0/2".encode(),
                                                   f"{topic}/0/5".encode()]
    assert all(h[COMPONENT_HEADER] == b"lake_writer" and h[PROJECT_HEADER] == project.encode()
               for h in headers)
    rows = db.execute("SELECT project_id, kafka_topic, kafka_partition, kafka_offset, event_id"
                      " FROM dead_letters WHERE component = 'lake_writer' AND kafka_topic = %s"
                      " ORDER BY kafka_offset", (topic,)).fetchall()
    assert rows == [(project, topic, 0, 2, "nul-event"), (project, topic, 0, 5, None)]


def test_lake_writer_serves_readiness_and_metrics_while_it_runs(stack, fresh_topic, tmp_path):
    topic = fresh_topic(partitions=2)
    from tests.integration.batch_layer.conftest import produce

    produce(stack.kafka_bootstrap, topic, make_events(600, seed=62))
    settings = writer_settings(stack, topic, str(tmp_path / "lake"))
    (port,) = free_ports(1)
    env = {**os.environ,
           "TURNSTILE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
           "TURNSTILE_KAFKA_EVENTS_TOPIC": topic,
           "TURNSTILE_DATABASE_URL": stack.database_url,
           "TURNSTILE_LAKE_URI": settings.lake.uri,
           "TURNSTILE_BATCH_GROUP_ID": settings.group_id,
           "TURNSTILE_BATCH_ROLL_SECONDS": "0.5",
           "TURNSTILE_BATCH_OPS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "batch_layer.cli", "lake", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: lag(settings, 2) == 0, 60, "the writer to drain")

        def scraped_lag() -> dict:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text
            return {line.split('partition="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("turnstile_consumer_lag_events{")
                    and 'component="lake_writer"' in line and f'topic="{topic}"' in line}

        wait_for(lambda: scraped_lag() == {"0": 0.0, "1": 0.0}, 20, "lag 0 in /metrics")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text
        assert 'turnstile_consumer_events_in_total{component="lake_writer"} 600.0' in text
        assert 'turnstile_consumer_events_out_total{component="lake_writer"} 600.0' in text
        assert 'turnstile_consumer_last_success_timestamp_seconds{component="lake_writer"}' in text
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"kafka": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
