"""Applies the SQL migrations in ``schemas/migrations`` (``NNNN_name.sql``) in order.

Each file runs in its own transaction together with the row recording it in
``schema_migrations``, so a failed file leaves nothing behind. A session advisory lock
makes concurrent runners (several services starting at once) queue instead of racing.
A file whose checksum changed after it was applied is refused: fix forward with a new
file. The one exception is ``REWRITTEN``: files rewritten when pg_partman left (a fresh
machine no longer has it), whose old text a database may have applied; the migrations
that follow convert either state. Pending files are applied in version order even when
a later version is already applied, because engineers add numbered files in parallel.
A file whose first line is ``-- migrate: no-transaction`` runs outside a transaction
(CREATE INDEX CONCURRENTLY).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import psycopg
from psycopg.rows import TupleRow

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATIONS_TABLE = "schema_migrations"
# Any fixed bigint works; this one is the first 8 bytes of sha256("turnstile.migrate").
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"turnstile.migrate").digest()[:8], "big",
                                   signed=True)
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_NO_TRANSACTION = "-- migrate: no-transaction"
# version → checksums of earlier texts that databases applied; 0071/0072 convert those.
REWRITTEN: dict[int, frozenset[str]] = {
    1: frozenset({"ecb8119c477c3b39a64dbcf9da66e3d954aa19d76b95ce84f5be40d89a6570fa"}),
    3: frozenset({"49b1d84479d9d3da1f5b445eabd44c2648ef3d5919469482194f0ea8835ac9db"}),
    20: frozenset({"44563498c46c5cb158d2124a1b983953a2886842212fddae835e352c6b15df67"}),
    23: frozenset({"8698ee142649f9aa646ef8f193fe9ee9fda0d1f8e12017616afcd3c9a7be44c4"}),
}

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

State = Literal["applied", "pending", "changed", "missing"]


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree, or a file failed."""


@dataclass(frozen=True)
class Migration:
    """One ``NNNN_name.sql`` file."""

    version: int
    name: str
    sql: str
    checksum: str

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def transactional(self) -> bool:
        return not self.sql.lstrip().startswith(_NO_TRANSACTION)


@dataclass(frozen=True)
class MigrationStatus:
    """A version as seen on disk and in the database."""

    version: int
    name: str
    state: State
    applied_at: datetime | None


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migration files of ``directory``, by version; refuses odd names and duplicates."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version:04d}: "
                                 f"{found[version].filename}, {path.name}")
        raw = path.read_bytes()
        found[version] = Migration(version, match.group(2), raw.decode("utf-8"),
                                   hashlib.sha256(raw).hexdigest())
    return [found[v] for v in sorted(found)]


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR,
            lock_timeout_s: float = 120.0) -> list[Migration]:
    """Apply every pending migration; returns those applied by this call (idempotent)."""
    migrations = discover(directory)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        conn.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        try:
            conn.execute("RESET lock_timeout")
            conn.execute(_CREATE_TABLE)
            applied = _applied(conn)
            _refuse_changed(migrations, applied)
            done = []
            for migration in migrations:
                if migration.version not in applied:
                    _apply(conn, migration)
                    done.append(migration)
            return done
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])


def status(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[MigrationStatus]:
    """Each version on disk or in the database, with its state."""
    migrations = {m.version: m for m in discover(directory)}
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                              [MIGRATIONS_TABLE]).fetchone()
        applied = _applied(conn) if exists and exists[0] else {}
    rows = []
    for version in sorted(migrations.keys() | applied.keys()):
        on_disk = migrations.get(version)
        record = applied.get(version)
        if on_disk is None:
            name, _, applied_at = applied[version]
            rows.append(MigrationStatus(version, name, "missing", applied_at))
        elif record is None:
            rows.append(MigrationStatus(version, on_disk.name, "pending", None))
        else:
            state: State = "applied" if _same(on_disk, record[1]) else "changed"
            rows.append(MigrationStatus(version, on_disk.name, state, record[2]))
    return rows


def _applied(conn: psycopg.Connection[TupleRow]) -> dict[int, tuple[str, str, datetime]]:
    rows = conn.execute(
        f"SELECT version, name, checksum, applied_at FROM {MIGRATIONS_TABLE}"  # noqa: S608
    ).fetchall()
    return {int(v): (n, c, a) for v, n, c, a in rows}


def _same(migration: Migration, applied_checksum: str) -> bool:
    return (applied_checksum == migration.checksum
            or applied_checksum in REWRITTEN.get(migration.version, frozenset()))


def _refuse_changed(migrations: list[Migration],
                    applied: dict[int, tuple[str, str, datetime]]) -> None:
    changed = [m.filename for m in migrations
               if m.version in applied and not _same(m, applied[m.version][1])]
    if changed:
        raise MigrationError(
            f"applied migration(s) changed on disk: {', '.join(changed)}; "
            "never edit an applied migration, add a new one"
        )


def _apply(conn: psycopg.Connection[TupleRow], migration: Migration) -> None:
    record = (f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) "  # noqa: S608
              "VALUES (%s, %s, %s)")
    params = [migration.version, migration.name, migration.checksum]
    try:
        if migration.transactional:
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(record, params)
        else:
            conn.execute(migration.sql.encode())
            conn.execute(record, params)
    except psycopg.Error as exc:
        raise MigrationError(f"{migration.filename} failed: {exc}") from exc
