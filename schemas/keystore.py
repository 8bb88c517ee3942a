"""Projects and keys in PostgreSQL: the one place their SQL lives.

Both the gateway (write keys) and the query API (read and admin keys) authenticate through
``authenticate``; key management (CLI and admin API) goes through the other functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from schemas.keys import (
    KeyInfo,
    KeyKind,
    display_prefix,
    generate_key_id,
    generate_secret,
    hash_secret,
    hashes_match,
    looks_like_key,
)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key: the only moment the secret exists outside its owner."""

    info: KeyInfo
    secret: str


def _info(row: dict[str, Any]) -> KeyInfo:
    return KeyInfo(
        key_id=row["key_id"],
        project_id=row["project_id"],
        kind=KeyKind(row["kind"]),
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def create_project(
    conn: psycopg.Connection[Any], project_id: str, name: str | None = None
) -> None:
    """Create a project if it does not exist (idempotent)."""
    conn.execute(
        "INSERT INTO projects (project_id, name) VALUES (%s, %s) "
        "ON CONFLICT (project_id) DO NOTHING",
        (project_id, name or project_id),
    )


def create_key(
    conn: psycopg.Connection[Any], project_id: str, kind: KeyKind, name: str = ""
) -> NewKey:
    secret = generate_secret(kind)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO api_keys (key_id, project_id, kind, key_hash, prefix, name) "
            "VALUES (%s, %s, %s, %s, %s, %s) "
            "RETURNING key_id, project_id, kind, name, prefix, created_at, revoked_at",
            (generate_key_id(), project_id, kind.value, hash_secret(secret),
             display_prefix(secret), name),
        )
        row = cur.fetchone()
    assert row is not None  # noqa: S101 - INSERT … RETURNING always returns the row
    return NewKey(info=_info(row), secret=secret)


def list_keys(conn: psycopg.Connection[Any], project_id: str) -> list[KeyInfo]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT key_id, project_id, kind, name, prefix, created_at, revoked_at "
            "FROM api_keys WHERE project_id = %s ORDER BY created_at",
            (project_id,),
        )
        return [_info(r) for r in cur.fetchall()]


def revoke_key(conn: psycopg.Connection[Any], project_id: str, key_id: str) -> bool:
    """Revoke a key of this project; False when no such active key exists."""
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = now() "
        "WHERE project_id = %s AND key_id = %s AND revoked_at IS NULL",
        (project_id, key_id),
    )
    return cur.rowcount == 1


def consumer_hash_key(conn: psycopg.Connection[Any], project_id: str) -> str | None:
    """The project's key for hashing consumer ids (``schemas.ingest_wire``); None if no project."""
    row = conn.execute("SELECT consumer_hash_key FROM projects WHERE project_id = %s",
                       (project_id,)).fetchone()
    return str(row[0]) if row else None


def authenticate(conn: psycopg.Connection[Any], secret: str) -> KeyInfo | None:
    """The key's info when the secret is a known, active key; None otherwise."""
    if not looks_like_key(secret):
        return None
    digest = hash_secret(secret)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT key_id, project_id, kind, name, prefix, created_at, revoked_at, key_hash "
            "FROM api_keys "
            "WHERE key_hash = %s AND revoked_at IS NULL",
            (digest,),
        )
        row = cur.fetchone()
    if row is None or not hashes_match(bytes(row["key_hash"]), secret):
        return None
    return _info(row)
