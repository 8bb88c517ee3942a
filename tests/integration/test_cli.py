"""``turnstile stack`` and ``turnstile db`` as a user runs them, in a state folder of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from turnstile_cli.stack import KafkaBroker, LocalStack, PostgresServer, StackConfig, free_ports
from turnstile_cli.stack.process import pid_alive


def _turnstile(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnstile_cli.main", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.mark.slow
def test_stack_up_status_down_leaves_no_process_behind():
    state = Path(tempfile.mkdtemp(prefix="turnstile-cli-"))
    state.chmod(0o755)
    kafka_port, controller_port, postgres_port = free_ports(3)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TURNSTILE_KAFKA_BOOTSTRAP", "TURNSTILE_DATABASE_URL")}
    env.update({
        "TURNSTILE_STATE_DIR": str(state),
        "TURNSTILE_STACK_KAFKA_PORT": str(kafka_port),
        "TURNSTILE_STACK_KAFKA_CONTROLLER_PORT": str(controller_port),
        "TURNSTILE_STACK_POSTGRES_PORT": str(postgres_port),
    })
    kafka = KafkaBroker(state, kafka_port, controller_port)
    postgres = PostgresServer(state, postgres_port)
    try:
        up = _turnstile("stack", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"127.0.0.1:{kafka_port}" in up.stdout
        pids = (kafka.pid, postgres.pid)
        assert None not in pids

        again = _turnstile("stack", "up", env=env)  # idempotent: same servers
        assert again.returncode == 0, again.stdout + again.stderr
        assert (kafka.pid, postgres.pid) == pids

        migrated = _turnstile("db", "migrate", "--database-url", postgres.database_url, env=env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        db_status = _turnstile("db", "status", "--database-url", postgres.database_url, env=env)
        assert db_status.returncode == 0 and "metrics_1m" in db_status.stdout

        status = _turnstile("stack", "status", env=env)
        assert status.returncode == 0, status.stdout
        assert all(str(pid) in status.stdout for pid in pids)

        down = _turnstile("stack", "down", env=env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not any(pid_alive(pid) for pid in pids if pid is not None)
        assert _turnstile("stack", "status", env=env).returncode == 1
    finally:
        LocalStack(StackConfig(state, kafka_port, controller_port, postgres_port)).down()
        shutil.rmtree(state, ignore_errors=True)
