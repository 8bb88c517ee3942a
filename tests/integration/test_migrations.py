"""The migration runner against real databases, each test on a database of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from schemas.migrate import MigrationError, discover, migrate, status


@pytest.fixture
def empty_database(stack, db) -> Iterator[str]:
    """A new, empty database; returns its URL."""
    name = f"migrate_{uuid.uuid4().hex[:10]}"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = stack.database_url.rpartition("/")
    yield f"{base}/{name}"
    db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrations_apply_twice_and_record_every_version(empty_database):
    files = discover()
    assert [m.version for m in files][:3] == [1, 2, 3]
    assert migrate(empty_database) == files
    assert migrate(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        recorded = conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert recorded == [(m.version, m.name, m.checksum) for m in files]
    assert {row.state for row in status(empty_database)} == {"applied"}


def test_concurrent_runners_apply_each_migration_once(empty_database):
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: migrate(empty_database), range(3)))
    applied = sorted(m.version for result in results for m in result)
    assert applied == [m.version for m in discover()]


def _write(directory: Path, name: str, body: str) -> None:
    (directory / name).write_text(body)


def test_changed_applied_migration_is_refused(empty_database, tmp_path):
    _write(tmp_path, "0001_one.sql", "CREATE TABLE one (id int);")
    migrate(empty_database, tmp_path)
    _write(tmp_path, "0001_one.sql", "CREATE TABLE one (id bigint);")
    with pytest.raises(MigrationError, match="0001_one.sql"):
        migrate(empty_database, tmp_path)
    assert [row.state for row in status(empty_database, tmp_path)] == ["changed"]


def test_failed_migration_leaves_nothing_behind(empty_database, tmp_path):
    _write(tmp_path, "0001_good.sql", "CREATE TABLE good (id int);")
    _write(tmp_path, "0002_bad.sql", "CREATE TABLE half (id int);\nSELECT no_such_function();")
    with pytest.raises(MigrationError, match="0002_bad.sql"):
        migrate(empty_database, tmp_path)
    states = {row.name: row.state for row in status(empty_database, tmp_path)}
    assert states == {"good": "applied", "bad": "pending"}
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)


def test_pending_file_older_than_applied_ones_is_still_applied(empty_database, tmp_path):
    _write(tmp_path, "0002_later.sql", "CREATE TABLE later (id int);")
    migrate(empty_database, tmp_path)
    _write(tmp_path, "0001_earlier.sql", "CREATE TABLE earlier (id int);")
    assert [m.version for m in migrate(empty_database, tmp_path)] == [1]


def test_badly_named_file_is_refused(tmp_path):
    _write(tmp_path, "1_oops.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_lower_snake"):
        discover(tmp_path)
