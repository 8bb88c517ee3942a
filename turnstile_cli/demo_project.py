"""The demo project of the local stack and its keys, created once per state folder.

The secrets are kept in ``<state>/demo-keys.json`` (mode 0600) so that ``make run`` can
print a read key for the dashboard every time; real projects never store secrets, only
their hashes (``turnstile keys create`` prints a secret once).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg

from schemas import keystore
from schemas.keys import KeyKind

DEMO_PROJECT = "demo"
_FILE = "demo-keys.json"


def demo_keys(state_dir: Path, database_url: str) -> dict[str, str]:
    """``{"write": …, "read": …, "admin": …}`` for the demo project, creating them once."""
    path = state_dir / _FILE
    if path.exists():
        keys: dict[str, str] = json.loads(path.read_text())
        with psycopg.connect(database_url, autocommit=True) as conn:
            if all(keystore.authenticate(conn, s) for s in keys.values()):
                return keys
    with psycopg.connect(database_url, autocommit=True) as conn:
        keystore.create_project(conn, DEMO_PROJECT, "Demo shop API")
        keys = {kind.value: keystore.create_key(conn, DEMO_PROJECT, kind, "demo").secret
                for kind in KeyKind}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out, indent=2)
    return keys
