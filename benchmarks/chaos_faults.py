"""The faults, and how the run tells that the platform recovered from each by itself.

Recovered means: the component is running again (a new PID for a killed one), answers
/readyz if it did before the fault, and its counts move (new ``metrics_1m`` rows, lake
offsets committed, batches accepted, rules evaluated). A service the supervisor gave up
on (``failed``) is restarted with ``turnstile stack restart`` and counted as a manual step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.chaos_stack import CLI, ChaosStack, ready


@dataclass
class FaultResult:
    """What one fault did: the window the rest of the figures are measured over."""

    injected_at: float  # monotonic
    recovered_at: float | None = None
    manual_steps: int = 0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def recover_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.injected_at


def worker_pid(pid: int) -> int:
    """The process serving requests: a child worker when the gateway forks, else itself."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pid
    return int(children[0]) if children else pid


def kill9(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def service_up(stack: ChaosStack, name: str, old_pid: int | None, must_be_ready: bool) -> bool:
    row = stack.status().get(name)
    if row is None or row.state != "running" or row.pid is None or row.pid == old_pid:
        return False
    return not must_be_ready or row.health == "ready"


def services_up(stack: ChaosStack, ready_before: dict[str, bool]) -> bool:
    """Every service running, and ready where it was ready before the fault."""
    rows = stack.status()
    for name, was_ready in ready_before.items():
        row = rows.get(name)
        if row is None or row.state != "running" or (was_ready and row.health != "ready"):
            return False
    return True


def failed_services(stack: ChaosStack) -> list[str]:
    return [name for name, row in stack.status().items() if row.state == "failed"]


def wait_recovered(stack: ChaosStack, result: FaultResult, condition: Callable[[], bool],
                   timeout: float, what: str) -> None:
    """Poll ``condition``; past ``timeout`` revive failed services by hand (manual steps)."""
    deadline = time.monotonic() + timeout
    revived = False
    while True:
        try:
            ok = condition()
        except Exception as exc:  # noqa: BLE001 - a server may still be down
            ok = False
            result.extra["last_probe_error"] = f"{type(exc).__name__}: {exc}"[:300]
        if ok:
            result.recovered_at = time.monotonic()
            return
        if time.monotonic() > deadline:
            failed = failed_services(stack)
            if failed and not revived:
                for name in failed:
                    subprocess.run([*CLI, "stack", "restart", name, "--state-dir",
                                    str(stack.state_dir)], env=stack.env(),
                                   capture_output=True, timeout=30, check=False)
                    result.manual_steps += 1
                    result.notes.append(f"{name} failed: `turnstile stack restart {name}`")
                revived = True
                deadline = time.monotonic() + min(timeout, 30.0)
                continue
            result.notes.append(f"not recovered in {timeout:.0f} s: {what}")
            for name, row in stack.status().items():
                if row.state != "running" or row.health not in ("ready", "-"):
                    result.notes.append(f"{name} {row.state}/{row.health}: {row.last_error}")
            return
        time.sleep(0.25)


def metrics_total(stack: ChaosStack, project: str) -> int:
    rows = stack.query("SELECT coalesce(sum(request_count), 0)::bigint FROM metrics_1m"
                       " WHERE project_id = %s", (project,))
    return int(rows[0][0])


def kill_service(stack: ChaosStack, name: str, project: str, timeout: float,
                 accepted_since: Callable[[float], bool]) -> FaultResult:
    """kill -9 one supervised service (the gateway's worker process) and time its return."""
    rows = stack.status()
    row = rows[name]
    if row.pid is None:
        raise RuntimeError(f"{name} is not running before its fault")
    was_ready = row.health == "ready"
    target = worker_pid(row.pid) if name == "gateway" else row.pid
    before_metrics = metrics_total(stack, project)
    before_lake = stack.lake_committed()[0]
    result = FaultResult(time.monotonic(), extra={"killed_pid": target, "old_pid": row.pid})
    kill9(target)
    old = row.pid
    moved: dict[str, Callable[[], bool]] = {
        "speed": lambda: metrics_total(stack, project) > before_metrics,
        "lake": lambda: stack.lake_committed()[0] > before_lake,
        "gateway": lambda: accepted_since(result.injected_at),
        "alerting": lambda: _evaluated_since(stack, time.time() - 0.5),
    }
    restarted_wall: list[float] = []

    def back() -> bool:
        if not restarted_wall:
            if not service_up(stack, name, old, was_ready):
                return False
            restarted_wall.append(time.time())
        if name == "alerting":
            return _evaluated_since(stack, restarted_wall[0])
        return moved.get(name, lambda: True)()

    wait_recovered(stack, result, back, timeout, f"{name} running, ready, counting")
    new = stack.status()[name].pid
    result.extra["new_pid"] = new
    result.extra["restarts"] = stack.status()[name].restarts
    return result


def _evaluated_since(stack: ChaosStack, wall: float) -> bool:
    rows = stack.query("SELECT count(*) FROM alert_state WHERE evaluated_at > to_timestamp(%s)",
                       (wall,))
    return int(rows[0][0]) > 0


def outage(stack: ChaosStack, server: str, seconds: float, project: str, timeout: float,
           ready_before: dict[str, bool], accepted_since: Callable[[float], bool]
           ) -> FaultResult:
    """Stop Kafka or PostgreSQL for ``seconds``, start it again, wait for the flow to resume."""
    local = stack.local
    box = local.kafka if server == "kafka" else local.postgres
    before_lake = stack.lake_committed()[0] if server != "kafka" else None
    before_metrics = metrics_total(stack, project) if server != "postgres" else None
    result = FaultResult(time.monotonic())
    box.stop(timeout=30)
    stopped = time.monotonic()
    result.extra["stop_s"] = round(stopped - result.injected_at, 2)
    time.sleep(max(0.0, seconds - (stopped - result.injected_at)))
    restart_at = time.monotonic()
    box.start(timeout=120)
    result.extra["outage_s"] = round(time.monotonic() - result.injected_at, 1)
    result.extra["server_start_s"] = round(time.monotonic() - restart_at, 1)
    if before_metrics is None:
        before_metrics = metrics_total(stack, project)
    if before_lake is None:
        before_lake = stack.lake_committed()[0]
    back_at = time.monotonic()
    m0, l0 = before_metrics, before_lake

    def flowing() -> bool:
        return (services_up(stack, ready_before) and accepted_since(back_at)
                and metrics_total(stack, project) > m0 and stack.lake_committed()[0] > l0)

    wait_recovered(stack, result, flowing, timeout,
                   "every service running and ready, gateway, speed layer and lake counting")
    return result


def _connected_to(pid: int, port: int) -> bool:
    """Whether ``pid`` holds a TCP connection to 127.0.0.1:``port`` (its sockets' inodes)."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
                  for fd in os.listdir(f"/proc/{pid}/fd")}
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    wanted = f":{port:04X}"
    return any(cols[2].endswith(wanted) and cols[9] in inodes
               for cols in (line.split() for line in lines))


def billing_kill(stack: ChaosStack, day: str, delay_s: float, timeout: float) -> FaultResult:
    """``turnstile billing run`` killed -9 inside the job, then run again to completion.

    Start-up (imports) is most of a run on a small lake, so the kill waits until the job
    has connected to PostgreSQL (it reads the tiers, then DuckDB reads the lake, then it
    replaces the day's rows) and then ``delay_s`` more.
    """
    log = stack.state_dir / "logs" / "chaos-billing.log"
    cmd = [*CLI, "billing", "run", "--date", day]
    finished_before = log.read_text().count("DayResult(day=") if log.exists() else 0
    with log.open("ab") as out:
        first = subprocess.Popen(cmd, env=stack.job_env(), stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        result = FaultResult(time.monotonic())
        deadline = time.monotonic() + timeout
        while first.poll() is None and not _connected_to(first.pid, stack.postgres_port):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        time.sleep(delay_s)
        kill9(first.pid)
        first.wait(10)
        result.extra["killed_after_connect_s"] = round(delay_s, 3)
        result.extra["killed_rc"] = first.returncode
        again = subprocess.run(cmd, env=stack.job_env(), stdout=out, stderr=subprocess.STDOUT,
                               timeout=timeout, check=False)
    # The killed run finished its day if it logged a result of its own.
    finished = log.read_text().count("DayResult(day=") - finished_before
    result.extra["killed_run_had_finished"] = finished >= (2 if again.returncode == 0 else 1)
    if result.extra["killed_run_had_finished"]:
        result.notes.append("the killed run had finished its day before the kill")
    result.extra["rerun_rc"] = again.returncode
    if again.returncode in (0, 2):  # 2: ran, with unexplained keys (in-flight data)
        result.recovered_at = time.monotonic()
    else:
        result.notes.append(f"re-run exited {again.returncode}; see {log}")
    return result


def wait_ready_url(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(url):
            return True
        time.sleep(0.2)
    return False
