"""A lake day holding keys PostgreSQL cannot store (files written before the gateway check)."""

import msgspec
import pyarrow as pa

from batch_layer.jobs import run_day
from batch_layer.lake import (
    LAKE_ARROW_SCHEMA,
    data_file_name,
    open_lake,
    partition_dir,
    write_parquet_atomic,
)
from tests.integration.batch_layer.conftest import writer_settings
from tests.integration.batch_layer.test_billing import assert_equals_truth, setup_projects
from tests.records import events_table
from tests.unit.batch_layer.fixtures import DAY, make_events


def write_lake_file(lake, events, partition: int, first_offset: int) -> None:
    table = events_table(events)
    n = table.num_rows
    table = (table.append_column("kafka_partition", pa.array([partition] * n, pa.int32()))
             .append_column("kafka_offset", pa.array(range(first_offset, first_offset + n),
                                                     pa.int64()))
             .append_column("batch_id", pa.array(["b"] * n, pa.string()))
             .append_column("batch_index", pa.array(range(n), pa.int32())))
    project = events[0].project_id
    path = lake.path(partition_dir(DAY, project), data_file_name(partition, first_offset))
    write_parquet_atomic(lake, path, table.cast(LAKE_ARROW_SCHEMA), 1)


def test_billing_completes_for_every_other_key_when_one_key_holds_nul(
        stack, db, fresh_topic, tmp_path):
    setup_projects(db)
    settings = writer_settings(stack, fresh_topic(1), str(tmp_path / "lake"))
    lake = open_lake(settings)
    acme = make_events(500, seed=71, projects=("acme",), keys=4)
    globex = make_events(300, seed=72, projects=("globex",), keys=3)
    poisoned = [msgspec.structs.replace(e, api_key="key-\x00-bad")
                for e in make_events(3, seed=73, projects=("acme",))]
    write_lake_file(lake, acme[:250] + poisoned[:2] + acme[250:], 0, 1000)
    write_lake_file(lake, globex + poisoned[2:], 1, 5000)
    result = run_day(settings, lake, db, DAY)
    assert result.dead_letters == 3
    assert result.total_requests == len(acme) + len(globex)
    assert_equals_truth(db, acme + globex)
    rows = db.execute(
        "SELECT project_id, kafka_topic, kafka_partition, kafka_offset, event_id, reason"
        " FROM dead_letters WHERE component = 'billing' AND kafka_topic = %s"
        " ORDER BY kafka_partition, kafka_offset", (settings.kafka.events_topic,)).fetchall()
    assert [r[:5] for r in rows] == [
        ("acme", settings.kafka.events_topic, 0, 1250, poisoned[0].event_id),
        ("acme", settings.kafka.events_topic, 0, 1251, poisoned[1].event_id),
        ("acme", settings.kafka.events_topic, 1, 5300, poisoned[2].event_id),
    ]
    assert rows[0][5].startswith("api_key: contains U+0000")
    again = run_day(settings, lake, db, DAY)  # re-running the day records nothing twice
    assert again.dead_letters == 3
    (n,) = db.execute("SELECT count(*) FROM dead_letters WHERE component = 'billing'"
                      " AND kafka_topic = %s", (settings.kafka.events_topic,)).fetchone()
    assert n == 3


def test_billing_scheduler_serves_readiness_metrics_and_a_heartbeat(stack, db, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from tests.integration.batch_layer.conftest import wait_for
    from turnstile_cli.stack import free_ports

    (port,) = free_ports(1)
    env = {**os.environ, "TURNSTILE_DATABASE_URL": stack.database_url,
           "TURNSTILE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
           "TURNSTILE_LAKE_URI": str(tmp_path / "lake"),
           "TURNSTILE_BATCH_OPS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "batch_layer.cli", "billing", "schedule"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=3).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "the billing scheduler to be ready")
        body = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=3).json()
        assert body == {"component": "billing", "ready": True, "checks": {"postgres": "ok"}}
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text
        assert ('turnstile_consumer_dependency_up{component="billing",dependency="postgres"} 1.0'
                in text)
        wait_for(lambda: db.execute(
            "SELECT state FROM pipeline_heartbeats WHERE component = 'billing'"
            " AND instance LIKE %s", (f"%:{proc.pid}",)).fetchone() == ("running",), 20,
            "the billing heartbeat")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert db.execute("SELECT state FROM pipeline_heartbeats WHERE component = 'billing'"
                      " AND instance LIKE %s", (f"%:{proc.pid}",)).fetchone() == ("stopped",)
