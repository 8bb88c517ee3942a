"""``<state>/supervisor.json`` (the supervisor's view) and the requests other commands leave it.

The supervisor is the only writer of the view and replaces it atomically; ``stack status``
reads it from any shell. Commands talk back through files in ``<state>/supervisor-requests/``
(``reload`` after ``stack up``, ``restart.NAME`` from ``stack restart``), which the
supervisor picks up within a tick; files need no port and survive a supervisor restart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from turnstile_cli.stack.plan import write_json_atomically
from turnstile_cli.stack.restart_policy import STATES, ServiceState

STATE_FILE = "supervisor.json"
REQUESTS_DIR = "supervisor-requests"
RELOAD = "reload"
_RESTART_PREFIX = "restart."


@dataclass(frozen=True)
class SupervisorView:
    """What ``supervisor.json`` holds."""

    pid: int | None
    started_at: float | None
    updated_at: float | None
    services: dict[str, ServiceState]


def save_view(state_dir: Path, view: SupervisorView) -> None:
    services = {}
    for name, state in view.services.items():
        record = asdict(state)
        record["exits"] = list(state.exits)
        services[name] = record
    write_json_atomically(state_dir / STATE_FILE, {
        "supervisor": {"pid": view.pid, "started_at": view.started_at,
                       "updated_at": view.updated_at},
        "services": services,
    })


def load_view(state_dir: Path) -> SupervisorView | None:
    """The last view written, or None when there is none (or it is unreadable)."""
    try:
        document = json.loads((state_dir / STATE_FILE).read_text())
        head = document["supervisor"]
        services = {name: _state(name, record)
                    for name, record in document["services"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return SupervisorView(head.get("pid"), head.get("started_at"), head.get("updated_at"),
                          services)


def remove_view(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)


def _state(name: str, record: dict[str, Any]) -> ServiceState:
    known = {f.name for f in fields(ServiceState)}
    values = {k: v for k, v in record.items() if k in known}
    values["name"] = name
    values["exits"] = tuple(values.get("exits") or ())
    if values.get("state") not in STATES:
        values["state"] = "stopped"
    return ServiceState(**values)


def request(state_dir: Path, what: str) -> None:
    """Leave a request for the supervisor (``RELOAD`` or ``restart_request(name)``)."""
    folder = state_dir / REQUESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / what).touch()


def restart_request(name: str) -> str:
    return _RESTART_PREFIX + name


def take_requests(state_dir: Path) -> tuple[bool, list[str]]:
    """Consume pending requests: (reload asked, names of services to restart)."""
    folder = state_dir / REQUESTS_DIR
    try:
        pending = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return False, []
    reload, names = False, []
    for path in pending:
        path.unlink(missing_ok=True)
        if path.name == RELOAD:
            reload = True
        elif path.name.startswith(_RESTART_PREFIX):
            names.append(path.name[len(_RESTART_PREFIX):])
    return reload, names
