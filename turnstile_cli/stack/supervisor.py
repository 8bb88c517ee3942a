"""The local stack's supervisor: starts every planned service and restarts one that exits.

It runs as ``turnstile stack supervise`` in a session of its own (``stack up --services``
starts it), decides with ``restart_policy`` and writes its view to ``supervisor.json`` on
every change. Services live in sessions of their own, so they outlive a killed supervisor;
a new one adopts those still running. On SIGTERM it exits and leaves the services alone:
``stack down`` stops it first, so nothing restarts what is being stopped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from turnstile_cli.stack import restart_policy as rp
from turnstile_cli.stack.logs import last_error_in
from turnstile_cli.stack.plan import ServicePlan, load_plan
from turnstile_cli.stack.process import process_started_at
from turnstile_cli.stack.restart_policy import ServiceState
from turnstile_cli.stack.services import Service, ServiceProcesses
from turnstile_cli.stack.supervisor_state import SupervisorView, load_view, save_view, take_requests

log = logging.getLogger("turnstile.supervisor")

TICK_S = 0.2
STOP_TIMEOUT_S = 20.0  # SIGTERM → SIGKILL for a service restarted on request


class Supervisor:
    """Keeps the services of one plan running; one instance per state folder."""

    def __init__(self, state_dir: Path, plan: ServicePlan, processes: ServiceProcesses,
                 clock: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.plan = plan
        self.processes = processes
        self.clock = clock
        self.started_at = clock()
        self.states: dict[str, ServiceState] = {}
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.kill_at: dict[str, float] = {}  # services asked to stop, SIGKILL after this
        self.retired: list[subprocess.Popen[bytes]] = []  # dropped from the plan, to reap
        self._dirty = True

    def adopt_or_start(self) -> None:
        """Take over services still running; everything else is due to start now."""
        previous = load_view(self.state_dir)
        known = previous.services if previous else {}
        now = self.clock()
        for service in self.plan.services:
            state = known.get(service.name, ServiceState(service.name))
            pid = self.processes.pid(service)
            if pid is not None:
                self.states[service.name] = rp.adopted(state, pid, process_started_at(pid))
                log.info("%s: adopted running process %d", service.name, pid)
            elif service.name in known:  # it died while no supervisor watched: a restart
                self.states[service.name] = rp.retry(rp.stopped(state), now)
            else:
                self.states[service.name] = state
                self._spawn(service, now)
        self._dirty = True

    def tick(self) -> None:
        """One round: requests, exits, due starts; the view is written when anything changed."""
        self._take_requests()
        now = self.clock()
        for service in self.plan.services:
            self._watch(service, now)
        self.retired = [child for child in self.retired if child.poll() is None]
        if self._dirty:
            self.save()

    def save(self) -> None:
        save_view(self.state_dir, SupervisorView(os.getpid(), self.started_at, self.clock(),
                                                 dict(self.states)))
        self._dirty = False

    def run(self, stop: threading.Event) -> None:
        self.adopt_or_start()
        last_failure, logged_at = "", 0.0
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # the supervisor outlives any one bad round
                # Logged once a minute while the same fault lasts (a full disk, say).
                if repr(exc) != last_failure or self.clock() - logged_at > 60:
                    log.exception("supervisor round failed; going on")
                    last_failure, logged_at = repr(exc), self.clock()
            stop.wait(TICK_S)
        self.save()
        log.info("supervisor stopping; services keep running until `stack down`")

    def _set(self, name: str, state: ServiceState) -> None:
        if state != self.states.get(name):
            self.states[name] = state
            self._dirty = True

    def _watch(self, service: Service, now: float) -> None:
        state = self.states[service.name]
        if state.state == "running":
            code, gone = self._exit_status(service, state)
            if gone:
                self.kill_at.pop(service.name, None)
                if state.pid is not None:  # a killed leader's workers would hold its port
                    self.processes.kill_group(state.pid)
                error = last_error_in(self.processes.log_file(service.name))
                after = self._set_exited(service.name, state, now, code, error)
                log.warning("%s: %s after %.1f s; %s", service.name, _exit_text(code),
                            now - (state.started_at or now), _describe(after, now, service))
            elif service.name in self.kill_at and now >= self.kill_at[service.name]:
                self._signal(state, signal.SIGKILL)
                self.kill_at[service.name] = now + STOP_TIMEOUT_S
        if rp.due(self.states[service.name], now):
            self._spawn(service, now)

    def _set_exited(self, name: str, state: ServiceState, now: float, code: int | None,
                    error: str | None) -> ServiceState:
        after = rp.exited(state, now, self.plan.policy, code, error)
        self._set(name, after)
        return after

    def _exit_status(self, service: Service, state: ServiceState) -> tuple[int | None, bool]:
        child = self.children.get(service.name)
        if child is not None and child.pid == state.pid:
            code = child.poll()
            if code is None:
                return None, False
            del self.children[service.name]
            return code, True
        # Adopted: not our child, so no exit code; gone when dead or its PID was reused.
        alive = state.pid is not None and self.processes.runs(service, state.pid)
        return None, not alive

    def _spawn(self, service: Service, now: float) -> None:
        state = self.states[service.name]
        try:
            child = self.processes.spawn(service)
        except OSError as exc:
            after = rp.start_failed(state, now, self.plan.policy, f"could not start: {exc}")
            self._set(service.name, after)
            log.error("%s: could not start (%s); %s", service.name, exc,
                      _describe(after, now, service))
            return
        self.children[service.name] = child
        started = rp.started(state, child.pid, now)
        self._set(service.name, started)
        log.info("%s: started pid %d%s", service.name, child.pid,
                 f" (restart {started.restarts})" if started.restarts else "")

    def _take_requests(self) -> None:
        reload, names = take_requests(self.state_dir)
        now = self.clock()
        if reload:
            self._reload(now)
        for name in names:
            if name in self.states:
                self._retry(name, now)
            else:
                log.warning("restart asked for unknown service %r", name)

    def _retry(self, name: str, now: float) -> None:
        state = rp.retry(self.states[name], now)
        self._set(name, state)
        if state.restart_requested:
            self._signal(state, signal.SIGTERM)
            self.kill_at[name] = now + STOP_TIMEOUT_S
        log.info("%s: restart asked", name)

    def _reload(self, now: float) -> None:
        """``stack up`` ran again: take its plan, give failed services another chance."""
        plan = load_plan(self.state_dir)
        if plan is None:
            return
        old = {service.name: service for service in self.plan.services}
        new_names = set(plan.names())
        for name in old:
            if name not in new_names:  # no longer wanted
                self._signal(self.states.pop(name), signal.SIGTERM)
                child = self.children.pop(name, None)
                if child is not None:
                    self.retired.append(child)
                self._dirty = True
        self.plan = plan
        self._dirty = True  # `stack up` waits for a view written after its request
        for service in plan.services:
            if service.name not in self.states:
                self.states[service.name] = ServiceState(service.name)
                self._spawn(service, now)
            elif old[service.name] != service or self.states[service.name].state == "failed":
                self._retry(service.name, now)
        log.info("plan reloaded: %s", ", ".join(plan.names()))

    def _signal(self, state: ServiceState, sig: signal.Signals) -> None:
        if state.pid is not None and state.pid > 0:
            self.processes.signal(state.pid, sig)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "gone (not our child, exit code unknown)"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _describe(state: ServiceState, now: float, service: Service) -> str:
    if state.state == "failed":
        return (f"failed after {len(state.exits)} exits; not restarted until "
                f"`turnstile stack restart {service.name}` or `stack up`")
    left = rp.delay_left(state, now)
    return f"restarting in {left:.1f} s" if left is not None else state.state


def supervise(state_dir: Path) -> int:
    """Entry point of ``turnstile stack supervise``: run until SIGTERM / SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plan = load_plan(state_dir)
    if plan is None:
        log.error("no plan in %s (run `turnstile stack up --services`)", state_dir)
        return 1
    # Held for the supervisor's life: a second one in this folder would double every service.
    with (state_dir / ".supervisor.run.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.error("another supervisor runs in %s; this one exits", state_dir)
            return 1
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        log.info("supervising %s", ", ".join(plan.names()))
        Supervisor(state_dir, plan, ServiceProcesses(state_dir)).run(stop)
    return 0
