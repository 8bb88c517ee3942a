import os
import signal
import subprocess
import sys
import time

from speed_layer.runner import ensure_dead_letter_topic
from tests.integration.speed_layer.conftest import produce
from tests.integration.speed_layer.helpers import assert_rows_equal, metrics, reference, total
from tests.unit.speed_layer.fixtures import make_records


def start_flow(settings, *args: str, start_offset: str = "earliest") -> subprocess.Popen:
    env = {
        **os.environ,
        "TURNSTILE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "TURNSTILE_KAFKA_EVENTS_TOPIC": settings.kafka.events_topic,
        "TURNSTILE_KAFKA_DEAD_LETTER_TOPIC": settings.kafka.dead_letter_topic,
        "TURNSTILE_DATABASE_URL": settings.database.dsn(),
        "TURNSTILE_STATE_DIR": str(settings.state.state_dir),
        "TURNSTILE_SPEED_EMIT_INTERVAL_S": "0.5",
        "TURNSTILE_SPEED_SNAPSHOT_INTERVAL_S": "1",
        "TURNSTILE_SPEED_START_OFFSET": start_offset,
    }
    log = open(settings.state.state_dir.parent / "speed.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "turnstile_cli.main", "speed", *args],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_kill_9_mid_stream_then_restart_gives_exact_totals(stack, db, speed_settings,
                                                          project_prefix):
    settings = speed_settings(partitions=3, recovery=True)
    settings.state.state_dir.mkdir(parents=True)
    ensure_dead_letter_topic(settings)
    records = make_records(40_000, minutes=4, projects=2, keys=6, seed=21,
                           project_prefix=project_prefix)
    chunks = [records[i:i + 5_000] for i in range(0, len(records), 5_000)]
    flow = start_flow(settings, "-w", "2")
    try:
        for chunk in chunks[:4]:
            produce(stack.kafka_bootstrap, settings.kafka.events_topic, chunk)
            time.sleep(0.4)
        # Partial results of open windows show up while the flow runs (freshness).
        assert wait_for(lambda: total(db, project_prefix) > 0, 10), "no partial emission"
        time.sleep(1.5)  # let at least one snapshot epoch complete
        flow.send_signal(signal.SIGKILL)
        flow.wait(10)
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait(10)
    written_before_restart = total(db, project_prefix)
    assert 0 < written_before_restart
    assert (settings.recovery_dir).exists()
    for chunk in chunks[4:]:
        produce(stack.kafka_bootstrap, settings.kafka.events_topic, chunk)
    # Without its recovery store the restart would begin at the end of the topic and miss
    # records: only restored offsets *and* restored windows give the exact totals below.
    again = start_flow(settings, "-w", "2", "--stop-at-end", start_offset="latest")
    try:
        assert again.wait(120) == 0
    finally:
        if again.poll() is None:
            again.kill()
            again.wait(10)
    assert total(db, project_prefix) == len(records)
    assert_rows_equal(metrics(db, project_prefix), reference(records))
