"""PostgreSQL stopped under a running speed layer: it waits, says so, and resumes exactly."""

import os
import subprocess
import sys
import time

import httpx
import psycopg

from speed_layer.runner import ensure_dead_letter_topic
from tests.integration.speed_layer.conftest import produce
from tests.integration.speed_layer.helpers import assert_rows_equal, metrics, reference, total
from tests.unit.speed_layer.fixtures import make_records
from turnstile_cli.stack import free_ports


def start_speed(settings, ops_port: int, log_path) -> subprocess.Popen:
    env = {
        **os.environ,
        "TURNSTILE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "TURNSTILE_KAFKA_EVENTS_TOPIC": settings.kafka.events_topic,
        "TURNSTILE_KAFKA_DEAD_LETTER_TOPIC": settings.kafka.dead_letter_topic,
        "TURNSTILE_DATABASE_URL": settings.database.dsn(),
        "TURNSTILE_STATE_DIR": str(settings.state.state_dir),
        "TURNSTILE_SPEED_EMIT_INTERVAL_S": "0.5",
        "TURNSTILE_SPEED_SNAPSHOT_INTERVAL_S": "1",
        "TURNSTILE_SPEED_OPS_PORT": str(ops_port),
    }
    return subprocess.Popen([sys.executable, "-m", "turnstile_cli.main", "speed"], env=env,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def eventually(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (psycopg.OperationalError, httpx.HTTPError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def fresh_total(url: str, prefix: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
        return total(conn, prefix)


def lag_of(text: str, topic: str) -> dict[str, float]:
    """Partition → lag of the speed layer's lag gauge in a Prometheus scrape."""
    found = {}
    for line in text.splitlines():
        if (line.startswith("turnstile_consumer_lag_events{") and 'component="speed_layer"' in
                line and f'topic="{topic}"' in line):
            found[line.split('partition="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return found


def scrape(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text


def ready(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=3).status_code


def test_postgres_outage_is_waited_out_logged_and_totals_stay_exact(
        stack, speed_settings, project_prefix, tmp_path):
    assert stack.postgres is not None, "this test stops the session's own PostgreSQL"
    settings = speed_settings(partitions=2)
    settings.state.state_dir.mkdir(parents=True)
    ensure_dead_letter_topic(settings)
    records = make_records(12_000, minutes=3, projects=2, keys=4, seed=51,
                           project_prefix=project_prefix)
    first, second = records[:6_000], records[6_000:]
    (port,) = free_ports(1)
    log_path = tmp_path / "speed.log"
    flow = start_speed(settings, port, log_path)
    try:
        produce(stack.kafka_bootstrap, settings.kafka.events_topic, first)
        eventually(lambda: fresh_total(stack.database_url, project_prefix) == len(first), 60,
                   "the first half to be counted")
        eventually(lambda: ready(port) == 200, 20, "readiness")
        topic = settings.kafka.events_topic
        eventually(lambda: lag_of(scrape(port), topic) == {"0": 0.0, "1": 0.0}, 20,
                   "lag 0 on both partitions")
        scraped = scrape(port)
        assert f'turnstile_consumer_events_in_total{{component="speed_layer"}} {len(first)}.0' \
            in scraped
        assert ('turnstile_consumer_last_success_timestamp_seconds{component="speed_layer"}'
                in scraped)

        stack.postgres.stop()
        try:
            produce(stack.kafka_bootstrap, settings.kafka.events_topic, second)
            eventually(lambda: "PostgreSQL unreachable at" in log_path.read_text(), 30,
                       "the outage to be logged")
            eventually(lambda: ready(port) == 503, 20, "readiness to turn false")
            assert "postgres" in httpx.get(f"http://127.0.0.1:{port}/readyz").text
            time.sleep(3)
            assert flow.poll() is None, "the speed layer exited during the outage"
        finally:
            stack.postgres.start()
        eventually(lambda: fresh_total(stack.database_url, project_prefix) == len(records),
                   90, "every record to be counted after the outage")
        eventually(lambda: ready(port) == 200, 30, "readiness after the outage")
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            assert_rows_equal(metrics(conn, project_prefix), reference(records))
    finally:
        flow.kill()
        flow.wait(10)
    log = log_path.read_text()
    outage = [line for line in log.splitlines() if "PostgreSQL unreachable at" in line]
    host, _, db_port = stack.database_url.split("@", 1)[1].split("/", 1)[0].partition(":")
    assert all(f"PostgreSQL unreachable at {host}:{db_port} (" in line
               and "; retrying in " in line for line in outage), outage[:3]
    assert "Traceback" not in log, log[-3000:]


def test_kafka_outage_is_waited_out_with_readiness_false_and_totals_stay_exact(
        stack, speed_settings, project_prefix, tmp_path):
    assert stack.kafka is not None, "this test stops the session's own broker"
    settings = speed_settings(partitions=2)
    settings.state.state_dir.mkdir(parents=True)
    ensure_dead_letter_topic(settings)
    records = make_records(8_000, minutes=3, projects=2, keys=4, seed=52,
                           project_prefix=project_prefix)
    first, second = records[:4_000], records[4_000:]
    (port,) = free_ports(1)
    log_path = tmp_path / "speed.log"
    flow = start_speed(settings, port, log_path)
    try:
        produce(stack.kafka_bootstrap, settings.kafka.events_topic, first)
        eventually(lambda: fresh_total(stack.database_url, project_prefix) == len(first), 60,
                   "the first half to be counted")
        eventually(lambda: ready(port) == 200, 20, "readiness")
        stack.kafka.stop()
        try:
            eventually(lambda: ready(port) == 503, 20, "readiness to turn false")
            assert "kafka" in httpx.get(f"http://127.0.0.1:{port}/readyz").text
            eventually(lambda: "Kafka unreachable at" in log_path.read_text(), 30,
                       "the outage to be logged")
            assert flow.poll() is None, "the speed layer exited during the outage"
        finally:
            stack.kafka.start()
        produce(stack.kafka_bootstrap, settings.kafka.events_topic, second)
        eventually(lambda: fresh_total(stack.database_url, project_prefix) == len(records),
                   120, "every record to be counted after the outage")
        eventually(lambda: ready(port) == 200, 30, "readiness after the outage")
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            assert_rows_equal(metrics(conn, project_prefix), reference(records))
    finally:
        flow.kill()
        flow.wait(10)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
