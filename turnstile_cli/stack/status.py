"""One row per expected component for ``turnstile stack status``: servers, supervisor, services.

A component that is expected but dead still gets a row (state ``stopped`` or ``failed``),
so a missing service can never look like a healthy stack. The supervisor's view gives the
state and restart count; the PID is checked live against the command line, so the rows
stay true when the supervisor itself is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from turnstile_cli.stack import restart_policy as rp
from turnstile_cli.stack.logs import last_error_in
from turnstile_cli.stack.plan import load_plan
from turnstile_cli.stack.process import cmdline, pid_alive, process_started_at, read_pid
from turnstile_cli.stack.restart_policy import ServiceState, State
from turnstile_cli.stack.servers import ComponentStatus, LocalStack
from turnstile_cli.stack.services import ServiceProcesses
from turnstile_cli.stack.supervisor_state import load_view

READY, NOT_READY, NO_ANSWER = "ready", "not ready", "no answer"
SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class ComponentRow:
    """What ``stack status`` shows for one component."""

    component: str
    state: State
    pid: int | None = None
    restarts: int | None = None
    uptime_s: float | None = None
    health: str = "-"
    address: str = "-"
    last_error: str | None = None
    log: Path | None = None
    health_required: bool = False  # servers: running but not answering is not fine
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "running" and (not self.health_required or self.health == READY)

    def to_json(self) -> dict[str, Any]:
        return {"component": self.component, "state": self.state, "ok": self.ok,
                "pid": self.pid, "restarts": self.restarts,
                "uptime_s": None if self.uptime_s is None else round(self.uptime_s, 1),
                "health": self.health, "address": self.address,
                "last_error": self.last_error, "log": str(self.log) if self.log else None,
                "note": self.note}


def supervisor_marker(state_dir: Path) -> str:
    """What the supervisor's command line holds (its state folder included)."""
    return f"turnstile_cli.main stack supervise --state-dir {state_dir.resolve()}"


def supervisor_pid(state_dir: Path) -> int | None:
    pid = read_pid(state_dir / "pids" / f"{SUPERVISOR}.pid")
    if pid is None or not pid_alive(pid):
        return None
    return pid if supervisor_marker(state_dir) in " ".join(cmdline(pid)) else None


def collect_status(stack: LocalStack, clock: Callable[[], float] = time.time) -> list[ComponentRow]:
    """Every expected component, health probed concurrently."""
    now = clock()
    rows = [_server_row(s, now) for s in stack.status()]
    state_dir = stack.config.state_dir
    plan = load_plan(state_dir)
    if plan is None:
        return rows
    sup_pid = supervisor_pid(state_dir)
    logs = state_dir / "logs"
    rows.append(ComponentRow(
        SUPERVISOR, "running" if sup_pid else "stopped", sup_pid, None,
        _uptime(sup_pid, now), "-", "-", last_error_in(logs / "supervisor.log"),
        logs / "supervisor.log",
        note="" if sup_pid else "not running: nothing restarts the services; "
                                "`turnstile stack up --services` starts one"))
    view = load_view(state_dir)
    processes = ServiceProcesses(state_dir)
    probes = []
    for service in plan.services:
        known = (view.services.get(service.name) if view else None) or ServiceState(service.name)
        pid = processes.pid(service)
        state = _service_state(known, pid, supervised=sup_pid is not None)
        started = known.started_at if known.pid == pid and known.started_at else None
        uptime = (now - (started or process_started_at(pid) or now)) if pid else None
        left = rp.delay_left(known, now) if state == "restarting" else None
        log = processes.log_file(service.name)
        rows.append(ComponentRow(
            service.name, state, pid, known.restarts, uptime,
            address=service.ready_url.rsplit("/", 1)[0] if service.ready_url else "-",
            last_error=last_error_in(log) or known.last_error, log=log,
            note=f"restart in {left:.1f} s" if left is not None else (
                f"exit code {known.last_exit_code}" if state != "running"
                and known.last_exit_code is not None else "")))
        probes.append((len(rows) - 1, service.ready_url if pid else None))
    with ThreadPoolExecutor(max_workers=8) as pool:
        healths = list(pool.map(lambda p: probe(p[1]) if p[1] else "-", probes))
    for (index, _), health in zip(probes, healths, strict=True):
        rows[index] = replace(rows[index], health=health)
    return rows


def probe(url: str, timeout: float = 2.0) -> str:
    """``ready`` for 200, ``not ready (CODE)`` for any other answer, ``no answer`` otherwise."""
    try:
        code = httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return NO_ANSWER
    return READY if code == 200 else f"{NOT_READY} ({code})"


def _service_state(known: ServiceState, pid: int | None, *, supervised: bool) -> State:
    if supervised:
        if known.state == "running" and pid is None:
            return "restarting"  # exited a moment ago; the supervisor sees it next tick
        return known.state
    # No supervisor: only the process itself tells the truth.
    if pid is not None:
        return "running"
    return "failed" if known.state == "failed" else "stopped"


def _server_row(status: ComponentStatus, now: float) -> ComponentRow:
    running = status.pid is not None or (not status.managed and status.healthy)
    return ComponentRow(
        status.component, "running" if running else "stopped", status.pid, None,
        _uptime(status.pid, now), READY if status.healthy else NO_ANSWER, status.address,
        last_error_in(status.log) if status.log else None, status.log, health_required=True)


def _uptime(pid: int | None, now: float) -> float | None:
    started = process_started_at(pid) if pid else None
    return None if started is None else max(0.0, now - started)
