"""The supervisor with real processes: tiny ``python -c`` services instead of the platform.

No Kafka or PostgreSQL here: the plan file names the services, so the supervisor, ``stack
status``, ``stack restart`` and ``stack down`` run exactly as they do over the platform.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from turnstile_cli.stack import LocalStack, StackConfig, free_ports
from turnstile_cli.stack.launcher import ensure_supervisor, stop_services
from turnstile_cli.stack.plan import ServicePlan
from turnstile_cli.stack.process import pid_alive, wait_until
from turnstile_cli.stack.restart_policy import RestartPolicy
from turnstile_cli.stack.services import Service
from turnstile_cli.stack.status import collect_status, supervisor_pid
from turnstile_cli.stack.supervisor_state import load_view

pytestmark = pytest.mark.slow

_SLEEP = "import sys, time; print('up', sys.argv[1], flush=True); time.sleep(3600)"
_CRASH = "import sys; print('RuntimeError: always broken', flush=True); sys.exit(3)"


def _service(name: str, code: str) -> Service:
    # A unique argument per test run: the PID check must never match another run's process.
    return Service(name, (sys.executable, "-c", code, f"{name}-{uuid.uuid4().hex}"))


def _rows(state: Path) -> dict[str, dict]:
    kafka_port, controller_port, postgres_port = free_ports(3)  # nothing listens there
    stack = LocalStack(StackConfig(state, kafka_port, controller_port, postgres_port))
    return {row.component: row.to_json() for row in collect_status(stack)}


def _turnstile(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TURNSTILE_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "turnstile_cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_killed_service_restarts_crashing_one_fails_and_down_leaves_nothing():
    state = Path(tempfile.mkdtemp(prefix="turnstile-supervisor-"))
    plan = ServicePlan(
        (_service("sleeper", _SLEEP), _service("other", _SLEEP), _service("crasher", _CRASH)),
        RestartPolicy(initial_backoff_s=3.0, max_failures=3),
    )
    seen: set[int] = set()
    try:
        seen.add(ensure_supervisor(state, plan, env={}))
        assert wait_until(lambda: _running(state, "sleeper", "other"), 30), _log(state)
        first = _rows(state)["sleeper"]
        assert (first["state"], first["restarts"]) == ("running", 0)
        seen.update({first["pid"], _rows(state)["other"]["pid"]})

        os.kill(first["pid"], signal.SIGKILL)
        assert wait_until(lambda: _rows(state)["sleeper"]["state"] == "restarting", 2,
                          interval=0.05), _rows(state)["sleeper"]
        assert _rows(state)["sleeper"]["pid"] is None
        assert wait_until(lambda: "restart in" in _rows(state)["sleeper"]["note"], 3,
                          interval=0.05), _rows(state)["sleeper"]
        assert wait_until(lambda: _rows(state)["sleeper"]["state"] == "running", 10), _log(state)
        again = _rows(state)["sleeper"]
        assert again["restarts"] == 1 and again["pid"] != first["pid"]
        assert again["uptime_s"] is not None and again["uptime_s"] < 5
        seen.add(again["pid"])
        assert load_view(state).services["sleeper"].last_exit_code == -signal.SIGKILL

        # 3 exits (backoff 3 s, then 6 s) and the crasher is left alone.
        assert wait_until(lambda: _rows(state)["crasher"]["state"] == "failed", 30), _log(state)
        crasher = _rows(state)["crasher"]
        assert crasher["restarts"] == 2 and crasher["last_error"] == "RuntimeError: always broken"
        time.sleep(3.5)  # longer than the first delay
        assert _rows(state)["crasher"]["restarts"] == 2  # not retried any more

        revived = _turnstile("stack", "restart", "crasher", state=state)
        assert revived.returncode == 0, revived.stdout + revived.stderr
        assert wait_until(lambda: _rows(state)["crasher"]["restarts"] == 3, 10), _log(state)

        # The supervisor itself dies: status says so, services keep running, a new one adopts.
        old_supervisor = supervisor_pid(state)
        os.kill(old_supervisor, signal.SIGKILL)
        assert wait_until(lambda: _rows(state)["supervisor"]["state"] == "stopped", 5)
        rows = _rows(state)
        assert "not running" in rows["supervisor"]["note"]
        assert rows["sleeper"]["state"] == "running" and rows["sleeper"]["pid"] == again["pid"]
        seen.add(ensure_supervisor(state, plan, env={}))
        assert supervisor_pid(state) not in (None, old_supervisor)
        assert wait_until(lambda: (load_view(state) or _Nothing).pid == supervisor_pid(state),
                          30), _log(state)
        rows = _rows(state)
        assert rows["sleeper"]["pid"] == again["pid"] and rows["sleeper"]["restarts"] == 1
        assert rows["supervisor"]["state"] == "running"
        # `up` again reuses the running supervisor; a second one in the folder refuses to run.
        assert ensure_supervisor(state, plan, env={}) == supervisor_pid(state)
        second = _turnstile("stack", "supervise", "--state-dir", str(state), state=state)
        assert second.returncode == 1
        assert "another supervisor runs" in (state / "logs" / "supervisor.log").read_text() + \
            second.stdout + second.stderr

        shown = _turnstile("stack", "status", "--json", state=state)
        assert shown.returncode == 1  # no Kafka / PostgreSQL here; the crasher fails again
        components = {c["component"]: c for c in json.loads(shown.stdout)["components"]}
        assert {"kafka", "postgres", "supervisor", "sleeper", "other", "crasher"} <= set(components)
        assert components["sleeper"]["state"] == "running"
        table = _turnstile("stack", "status", state=state)
        assert "sleeper" in table.stdout and "restarts" in table.stdout

        down = _turnstile("stack", "down", state=state)
        assert down.returncode == 0, down.stdout + down.stderr
        assert [pid for pid in seen if pid_alive(pid)] == []
        assert not list((state / "pids").glob("*.pid"))
        assert _turnstile("stack", "status", state=state).returncode == 1
    finally:
        stop_services(state)


class _Nothing:
    pid = None


def _running(state: Path, *names: str) -> bool:
    view = load_view(state)
    return view is not None and all(
        name in view.services and view.services[name].state == "running" for name in names)


def _log(state: Path) -> str:
    log = state / "logs" / "supervisor.log"
    return log.read_text() if log.exists() else "(no supervisor log)"
