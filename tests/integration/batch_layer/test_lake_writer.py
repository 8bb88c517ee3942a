import collections
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pyarrow.parquet as pq
import pytest

import batch_layer.lake_writer as lake_writer_module
from batch_layer.lake import committed_files, open_lake
from tests.integration.batch_layer.conftest import (
    drain,
    lag,
    lake_table,
    produce,
    wait_for,
    writer_settings,
)
from tests.unit.batch_layer.fixtures import DAY, make_events
from turnstile_cli.stack import free_ports

DAYS = [DAY, DAY + timedelta(days=1)]


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def positions(table):
    """How often each event of each record (partition, offset, event) is in the lake."""
    return collections.Counter(zip(table.column("kafka_partition").to_pylist(),
                                   table.column("kafka_offset").to_pylist(),
                                   table.column("event_id").to_pylist(), strict=True))


def test_every_record_lands_once_in_committed_parquet_files(stack, fresh_topic, tmp_path):
    topic = fresh_topic(partitions=4)
    events = make_events(4000, seed=11, days=2)
    produced = produce(stack.kafka_bootstrap, topic, events, duplicate_rate=0.05, seed=1)
    settings = writer_settings(stack, topic, str(tmp_path / "lake"))
    lake = open_lake(settings)
    writer = drain(settings, lake, 4)
    table = lake_table(lake, DAYS)
    assert table.num_rows == produced.events
    assert max(positions(table).values()) == 1
    assert set(table.column("event_id").to_pylist()) == {e.event_id for e in events}
    assert writer.stats.events == produced.events
    for path in committed_files(lake, DAY):
        assert "/project=" in path and path.endswith(".parquet")
    assert not os.listdir(tmp_path / "lake" / "_lake_writer" / "pending" / topic)


def test_interrupted_roll_is_replayed_into_the_same_files(stack, fresh_topic, tmp_path,
                                                          monkeypatch):
    topic = fresh_topic(partitions=2)
    events = make_events(3000, seed=12, days=2, projects=("a", "b", "c"))
    produced = produce(stack.kafka_bootstrap, topic, events)
    settings = writer_settings(stack, topic, str(tmp_path / "lake"), roll_seconds=60.0,
                               roll_bytes=100 * 1024)  # several size rolls
    lake = open_lake(settings)
    real_write = lake_writer_module.write_parquet_atomic
    calls = {"n": 0}

    def crash_after_two_files(*args, **kwargs):
        if calls["n"] == 2:
            raise RuntimeError("simulated crash in the middle of a roll")
        calls["n"] += 1
        real_write(*args, **kwargs)

    monkeypatch.setattr(lake_writer_module, "write_parquet_atomic", crash_after_two_files)
    with pytest.raises(RuntimeError, match="simulated crash"):
        drain(settings, lake, 2)
    assert lag(settings, 2) == produced.records  # nothing committed
    partial = lake_table(lake, DAYS).num_rows
    assert 0 < partial < produced.events
    monkeypatch.setattr(lake_writer_module, "write_parquet_atomic", real_write)
    writer = drain(settings, lake, 2)
    assert writer.stats.replays >= 1
    table = lake_table(lake, DAYS)
    assert table.num_rows == produced.events
    assert max(positions(table).values()) == 1


def test_kill_9_mid_file_loses_nothing_and_shows_no_partial_file(stack, fresh_topic, tmp_path):
    topic = fresh_topic(partitions=3)
    events = make_events(60_000, seed=13, days=2, keys=50)
    produced = produce(stack.kafka_bootstrap, topic, events, batch_size=200)
    settings = writer_settings(stack, topic, str(tmp_path / "lake"), roll_bytes=2 * 1024 * 1024)
    env = {**os.environ,
           "TURNSTILE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
           "TURNSTILE_KAFKA_EVENTS_TOPIC": topic,
           "TURNSTILE_LAKE_URI": settings.lake.uri,
           "TURNSTILE_BATCH_GROUP_ID": settings.group_id,
           "TURNSTILE_BATCH_ROLL_BYTES": str(settings.roll_bytes),
           "TURNSTILE_BATCH_ROLL_SECONDS": "1"}
    cmd = [sys.executable, "-m", "batch_layer.cli", "lake", "run"]
    kills = 0
    for delay in (2.5, 1.7, 2.2, 1.9):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(10)
        if lag(settings, 3) == 0:
            break
    assert kills >= 1
    (port,) = free_ports(1)
    proc = subprocess.Popen(cmd, env={**env, "TURNSTILE_BATCH_OPS_PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: lag(settings, 3) == 0, 90, "the restarted writer to drain")
        # v2 drains fast: the topic may be empty before the writer is up; SIGTERM only
        # once it serves /healthz (its signal handlers are installed by then).
        wait_for(lambda: _healthy(port), 30, "the restarted writer to serve /healthz")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    lake = open_lake(settings)
    for day in DAYS:
        for path in committed_files(lake, day):
            pq.read_metadata(path)  # a truncated file has no valid footer
    table = lake_table(lake, DAYS)
    assert max(positions(table).values()) == 1
    assert table.num_rows == produced.events
