"""``<state>/services.json``: what the last ``stack up --services`` asked the supervisor to run.

The plan holds each service's full command, environment and URLs, the ports they were
given and the restart policy, so the supervisor, ``stack status`` and ``stack down`` agree
on the expected services from any shell. Tests write a plan of tiny commands of their own.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from turnstile_cli.stack.restart_policy import RestartPolicy
from turnstile_cli.stack.services import Service, ServicePorts

PLAN_FILE = "services.json"
_FORMAT = 1


@dataclass(frozen=True)
class ServicePlan:
    """The services to supervise, in start order, and how patiently."""

    services: tuple[Service, ...]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    ports: ServicePorts | None = None

    def names(self) -> list[str]:
        return [service.name for service in self.services]


def plan_path(state_dir: Path) -> Path:
    return state_dir / PLAN_FILE


def save_plan(state_dir: Path, plan: ServicePlan) -> None:
    """Write the plan atomically: the supervisor may read it at any moment."""
    names = plan.names()
    if len(set(names)) != len(names):
        raise ValueError(f"service names must be unique, got {names}")
    document: dict[str, Any] = {
        "format": _FORMAT,
        "ports": asdict(plan.ports) if plan.ports else None,
        "restart_policy": asdict(plan.policy),
        "services": [{"name": s.name, "command": list(s.command), "env": dict(s.env),
                      "ready_url": s.ready_url, "live_url": s.live_url, "marker": s.marker}
                     for s in plan.services],
    }
    write_json_atomically(plan_path(state_dir), document)


def load_plan(state_dir: Path) -> ServicePlan | None:
    """The recorded plan, or None when no ``up --services`` ran (or ``down`` removed it)."""
    path = plan_path(state_dir)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        return None  # a plan of another version: treat as none rather than guess
    services = tuple(
        Service(name=s["name"], command=tuple(s["command"]), env=dict(s.get("env") or {}),
                ready_url=s.get("ready_url"), live_url=s.get("live_url"),
                marker=s.get("marker") or "")
        for s in document["services"]
    )
    known = {f.name for f in fields(RestartPolicy)}
    policy = RestartPolicy(**{k: v for k, v in (document.get("restart_policy") or {}).items()
                              if k in known})
    ports = ServicePorts(**document["ports"]) if document.get("ports") else None
    return ServicePlan(services, policy, ports)


def remove_plan(state_dir: Path) -> None:
    plan_path(state_dir).unlink(missing_ok=True)


def write_json_atomically(path: Path, document: object) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)
