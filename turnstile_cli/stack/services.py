"""The platform's own processes on top of the servers, and how one is spawned, found, stopped.

Each runs in its own session (so a signal to the supervisor never reaches it), with its
log in ``<state>/logs/<name>.log`` and its PID in ``<state>/pids/<name>.pid``, so that
``stack down`` and ``stack status`` find it from any shell and a new supervisor can adopt
it. A PID is only trusted while its command line still holds the service's marker,
because PIDs are reused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from turnstile_cli.stack.process import cmdline, kill_group, pid_alive, read_pid, stop_pid

GATEWAY_PORT = 8080
QUERY_PORT = 8090
SPEED_OPS_PORT = 9101
LAKE_OPS_PORT = 9102
BILLING_OPS_PORT = 9103
ALERTING_OPS_PORT = 9104


@dataclass(frozen=True)
class Service:
    """One long-running process: what to run and where it answers."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None  # its /readyz, shown by `stack status`
    live_url: str | None = None  # its /healthz, which `stack up` waits for
    marker: str = ""  # part of its command line that identifies it; the whole one by default

    @property
    def identity(self) -> str:
        return self.marker or " ".join(self.command)


@dataclass(frozen=True)
class ServicePorts:
    """Where the HTTP APIs and the ops servers (/healthz /readyz /metrics) listen."""

    gateway_port: int = GATEWAY_PORT
    query_port: int = QUERY_PORT
    speed_ops_port: int = SPEED_OPS_PORT
    lake_ops_port: int = LAKE_OPS_PORT
    billing_ops_port: int = BILLING_OPS_PORT
    alerting_ops_port: int = ALERTING_OPS_PORT


def turnstile_service(
    name: str, args: tuple[str, ...], port: int | None = None,
    env: Mapping[str, str] | None = None, *, own_api: bool = False,
) -> Service:
    """A ``turnstile <args>`` service; ``port`` serves /readyz (and /healthz when ``own_api``)."""
    base = f"http://127.0.0.1:{port}" if port is not None else None
    return Service(
        name=name, command=(sys.executable, "-m", "turnstile_cli.main", *args),
        env=dict(env or {}),
        ready_url=f"{base}/readyz" if base else None,
        live_url=f"{base}/healthz" if base and own_api else None,
        # The sub-command names the service whatever its options (the demo's rate, say).
        marker="turnstile_cli.main " + " ".join(args[:2]),
    )


def platform_services(
    state_dir: Path, *, demo_rate: float | None, ports: ServicePorts | None = None,
    gateway_workers: int = 1,
) -> list[Service]:
    """The services ``stack up --services`` supervises, in start order."""
    p = ports or ServicePorts()
    lake = str((state_dir / "lake").resolve())
    lake_env = {"TURNSTILE_LAKE_URI": lake}
    services = [
        turnstile_service("gateway", ("gateway", "--workers", str(gateway_workers), "--port",
                                      str(p.gateway_port), "--log-level", "warning"),
                          p.gateway_port, own_api=True),
        turnstile_service("speed", ("speed", "--workers", "1"), p.speed_ops_port,
                          {"TURNSTILE_SPEED_OPS_PORT": str(p.speed_ops_port)}),
        turnstile_service("lake", ("lake", "run"), p.lake_ops_port,
                          {**lake_env, "TURNSTILE_BATCH_OPS_PORT": str(p.lake_ops_port)}),
        # Lake writer and billing share BatchSettings, hence one variable, two ports.
        turnstile_service("billing", ("billing", "schedule"), p.billing_ops_port,
                          {**lake_env, "TURNSTILE_BATCH_OPS_PORT": str(p.billing_ops_port)}),
        turnstile_service("query", ("query", "--port", str(p.query_port), "--lake-root", lake,
                                    "--log-level", "warning"), p.query_port, own_api=True),
        turnstile_service("alerting", ("alerting",), p.alerting_ops_port,
                          {"TURNSTILE_ALERTING_OPS_PORT": str(p.alerting_ops_port)}),
    ]
    if demo_rate:
        services.append(turnstile_service(
            "demo", ("demo", "--rate", str(demo_rate),
                     "--gateway-url", f"http://127.0.0.1:{p.gateway_port}")))
    return services


class ServiceProcesses:
    """Spawns, finds and stops the service processes of one state folder."""

    def __init__(self, state_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.env = dict(os.environ if env is None else env)
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def pid(self, service: Service) -> int | None:
        """The PID of the running ``service``, checked against its command line."""
        pid = read_pid(self.pid_file(service.name))
        return pid if pid is not None and self.runs(service, pid) else None

    def runs(self, service: Service, pid: int) -> bool:
        """True while ``pid`` is alive and still ``service`` (not a reused PID)."""
        return pid_alive(pid) and service.identity in " ".join(cmdline(pid))

    def spawn(self, service: Service) -> subprocess.Popen[bytes]:
        """Start ``service`` in a session of its own, its output appended to its log."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, **service.env, "TURNSTILE_STATE_DIR": str(self.state_dir.resolve())}
        with self.log_file(service.name).open("ab") as log:
            proc = subprocess.Popen(list(service.command), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.pid_file(service.name).write_text(f"{proc.pid}\n")
        return proc

    def signal(self, pid: int, sig: signal.Signals) -> None:
        """Signal a service process the supervisor watches (it may be gone already)."""
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def kill_group(self, pid: int) -> None:
        kill_group(pid)

    def stop(self, service: Service, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; forgets the PID file."""
        pid = self.pid(service)
        if pid is not None:
            stop_pid(pid, timeout)
            kill_group(pid)
        self.pid_file(service.name).unlink(missing_ok=True)
