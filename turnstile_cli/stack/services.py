"""The platform's own processes on top of the servers: gateway, speed layer, lake, query, demo.

Each runs as ``turnstile <sub-command>`` in its own session, with its log in
``<state>/logs/<name>.log`` and its PID in ``<state>/pids/<name>.pid``, so that ``stack
down`` and ``stack status`` find them from any shell. A PID is only signalled while its
command line still names the service, because PIDs are reused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from turnstile_cli.stack.process import cmdline, pid_alive, read_pid, stop_pid, wait_until
from turnstile_cli.stack.supervisor import ComponentStatus

GATEWAY_PORT = 8080
QUERY_PORT = 8090


@dataclass(frozen=True)
class Service:
    """One long-running platform process."""

    name: str
    args: tuple[str, ...]
    health_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def marker(self) -> str:
        # Part of the command line that identifies this service's process, whatever its
        # options (the demo's rate, say).
        return "turnstile_cli.main " + " ".join(self.args[:2])


def platform_services(
    state_dir: Path,
    *,
    demo_rate: float | None,
    gateway_port: int = GATEWAY_PORT,
    query_port: int = QUERY_PORT,
    gateway_workers: int = 1,
) -> list[Service]:
    """The services ``stack up --services`` starts, in start order."""
    lake = str((state_dir / "lake").resolve())
    services = [
        Service("gateway", ("gateway", "--workers", str(gateway_workers), "--port",
                            str(gateway_port), "--log-level", "warning"),
                f"http://127.0.0.1:{gateway_port}/readyz"),
        Service("speed", ("speed", "--workers", "1")),
        Service("lake", ("lake", "run"), env={"TURNSTILE_BATCH_LAKE_URI": lake}),
        Service("billing", ("billing", "schedule"), env={"TURNSTILE_BATCH_LAKE_URI": lake}),
        Service("query", ("query", "--port", str(query_port), "--lake-root", lake,
                          "--log-level", "warning"),
                f"http://127.0.0.1:{query_port}/healthz"),
        Service("alerting", ("alerting",)),
    ]
    if demo_rate:
        services.append(Service("demo", ("demo", "--rate", str(demo_rate),
                                         "--gateway-url", f"http://127.0.0.1:{gateway_port}")))
    return services


class ServiceRunner:
    """Starts, stops and reports the services of one state folder."""

    def __init__(self, state_dir: Path, env: Mapping[str, str]) -> None:
        self.state_dir = state_dir
        self.env = dict(env)
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"

    def pid(self, service: Service) -> int | None:
        pid = read_pid(self.pid_dir / f"{service.name}.pid")
        if pid is None or not pid_alive(pid):
            return None
        return pid if service.marker in " ".join(cmdline(pid)) else None

    def start(self, service: Service) -> int:
        """Start ``service`` unless it already runs; returns its PID."""
        running = self.pid(service)
        if running is not None:
            return running
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{service.name}.log").open("ab")
        command = [sys.executable, "-m", "turnstile_cli.main", *service.args]
        env = {**os.environ, **self.env, **service.env,
               "TURNSTILE_STATE_DIR": str(self.state_dir.resolve())}
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        (self.pid_dir / f"{service.name}.pid").write_text(f"{proc.pid}\n")
        return proc.pid

    def wait_healthy(self, service: Service, timeout: float = 60.0) -> bool:
        return wait_until(lambda: self.healthy(service), timeout, interval=0.5)

    def healthy(self, service: Service) -> bool:
        if self.pid(service) is None:
            return False
        if service.health_url is None:
            return True
        try:
            return httpx.get(service.health_url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, service: Service, timeout: float = 20.0) -> None:
        pid = self.pid(service)
        if pid is not None:
            stop_pid(pid, timeout)
        (self.pid_dir / f"{service.name}.pid").unlink(missing_ok=True)

    def status(self, service: Service) -> ComponentStatus:
        pid = self.pid(service)
        address = service.health_url.rsplit("/", 1)[0] if service.health_url else "-"
        return ComponentStatus(service.name, pid, address, self.healthy(service), True,
                               self.log_dir / f"{service.name}.log")
