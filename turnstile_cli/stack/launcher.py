"""Starting and stopping the supervisor and the services it runs, from any ``turnstile`` command.

``stack up --services`` saves the plan and either asks the running supervisor to reload it
or starts a new one (which adopts services still running). ``stack down`` stops the
supervisor first, so it cannot restart what is being stopped, then every service.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from turnstile_cli.stack.plan import ServicePlan, load_plan, remove_plan, save_plan
from turnstile_cli.stack.process import cmdline, pid_alive, read_pid, stop_pid, wait_until
from turnstile_cli.stack.services import ServiceProcesses
from turnstile_cli.stack.status import SUPERVISOR, supervisor_pid
from turnstile_cli.stack.supervisor_state import RELOAD, load_view, remove_view, request


def ensure_supervisor(state_dir: Path, plan: ServicePlan, env: Mapping[str, str]) -> int:
    """Save ``plan`` and have a supervisor run it; returns the supervisor's PID.

    A running supervisor reloads the plan (failed services get another chance); otherwise
    a new one starts, detached, with ``env`` (the servers' addresses) for its services.
    """
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".supervisor.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `up` at once start one supervisor
        save_plan(state_dir, plan)
        running = supervisor_pid(state_dir)
        if running is not None:
            request(state_dir, RELOAD)
            return running
        return _start_supervisor(state_dir, env)


def _start_supervisor(state_dir: Path, env: Mapping[str, str]) -> int:
    for folder in ("pids", "logs"):
        (state_dir / folder).mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "turnstile_cli.main", "stack", "supervise",
               "--state-dir", str(state_dir)]
    with (state_dir / "logs" / f"{SUPERVISOR}.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **env},
                                start_new_session=True)
    (state_dir / "pids" / f"{SUPERVISOR}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def wait_services_started(state_dir: Path, since: float, timeout: float) -> bool:
    """Wait until the supervisor has written a view after ``since`` that runs every service."""
    plan = load_plan(state_dir)
    if plan is None:
        return False

    def settled() -> bool:
        view = load_view(state_dir)
        if view is None or (view.updated_at or 0) < since:
            return False
        states = [view.services.get(name) for name in plan.names()]
        return all(s is not None and s.state in ("running", "failed") for s in states)

    return wait_until(settled, timeout, interval=0.2)


def stop_supervisor(state_dir: Path, timeout: float = 10.0) -> None:
    pid = supervisor_pid(state_dir)
    if pid is not None:
        stop_pid(pid, timeout)
    (state_dir / "pids" / f"{SUPERVISOR}.pid").unlink(missing_ok=True)


def stop_services(state_dir: Path, timeout: float = 20.0) -> None:
    """Stop the supervisor, then the planned services in reverse order, then any stray one.

    A stray PID file (a service of an older plan) is only acted on while its process still
    runs ``turnstile_cli.main``: anything else holding that PID now is not ours.
    """
    stop_supervisor(state_dir)
    processes = ServiceProcesses(state_dir)
    plan = load_plan(state_dir)
    for service in reversed(plan.services if plan else ()):
        processes.stop(service, timeout)
    for pid_file in sorted((state_dir / "pids").glob("*.pid")):
        pid = read_pid(pid_file)
        if pid is not None and pid_alive(pid) and "turnstile_cli.main" in " ".join(cmdline(pid)):
            stop_pid(pid, timeout)
        pid_file.unlink(missing_ok=True)
    remove_plan(state_dir)
    remove_view(state_dir)
