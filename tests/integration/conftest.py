"""Real servers for integration tests: a Kafka broker and a PostgreSQL server per session.

Each test session gets its own temporary state folder and ports chosen by the OS, so
several sessions (two engineers, CI) can run on one machine at once. Set
``TURNSTILE_KAFKA_BOOTSTRAP`` / ``TURNSTILE_DATABASE_URL`` to test against existing
servers instead. Servers are stopped at session end whatever happened; the state folder
(with the servers' logs) is kept when a test failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from schemas.metric_policies import MetricPolicySettings, apply_policies
from schemas.migrate import migrate
from schemas.settings import KafkaSettings
from turnstile_cli.stack import (
    KafkaBroker,
    LocalStack,
    PostgresServer,
    StackConfig,
    StackError,
    ensure_topic,
    free_ports,
)
from turnstile_cli.stack.servers import DATABASE_ENV, KAFKA_ENV

_START_ATTEMPTS = 3


@dataclass(frozen=True)
class TestStack:
    """What a test needs to reach the servers; ``kafka``/``postgres`` are None when external."""

    __test__ = False  # not a test class, despite the name

    kafka_bootstrap: str
    database_url: str
    state_dir: Path
    kafka: KafkaBroker | None
    postgres: PostgresServer | None
    kafka_settings: KafkaSettings


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[TestStack]:
    """Start (or reach) Kafka and PostgreSQL, apply migrations, create the topics."""
    _stop_servers_on_sigterm()
    root = Path(tempfile.mkdtemp(prefix="turnstile-test-"))
    root.chmod(0o755)  # PostgreSQL runs as the `postgres` user, which must enter it
    local = _start(root)
    try:
        migrate(local.database_url)
        _keep_test_data(local.database_url)
        yield TestStack(
            kafka_bootstrap=local.kafka_bootstrap,
            database_url=local.database_url,
            state_dir=local.config.state_dir,
            kafka=None if local.config.external_kafka else local.kafka,
            postgres=None if local.config.external_database else local.postgres,
            kafka_settings=KafkaSettings(bootstrap=local.kafka_bootstrap),
        )
    finally:
        local.down(timeout=20.0)
        if request.session.testsfailed:
            print(f"\nintegration state and server logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _keep_test_data(database_url: str) -> None:
    """Tests write fixed past days: retention jobs must not drop them mid-session (their
    own tests use databases of their own)."""
    forever = "100 years"
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_policies(conn, MetricPolicySettings(
            retention_1m=forever, retention_1h=forever, retention_1d=forever,
            retention_late_events=forever))


def _stop_servers_on_sigterm() -> None:
    """Turn SIGTERM (a CI timeout, `kill`) into KeyboardInterrupt, so teardown still runs."""
    if (signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
            and threading.current_thread() is threading.main_thread()):
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _start(root: Path) -> LocalStack:
    """Start on fresh free ports; another session may grab a port first, so retry."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        kafka_port, controller_port, postgres_port = free_ports(3)
        config = StackConfig(
            state_dir=root / f"attempt-{attempt}",
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            postgres_port=postgres_port,
            external_kafka=os.environ.get(KAFKA_ENV) or None,
            external_database=os.environ.get(DATABASE_ENV) or None,
        )
        local = LocalStack(config)
        try:
            local.up(KafkaSettings(bootstrap=local.kafka_bootstrap), timeout=90.0)
        except BaseException as exc:  # Ctrl-C during start-up must not leak servers either
            local.down(timeout=10.0)
            if attempt == _START_ATTEMPTS or not isinstance(exc, StackError | OSError):
                raise
            continue
        return local
    raise AssertionError("unreachable")


@pytest.fixture
def stack_env(stack: TestStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point settings objects built inside the test at the session's servers."""
    env = {KAFKA_ENV: stack.kafka_bootstrap, DATABASE_ENV: stack.database_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def db(stack: TestStack) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the session's database."""
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def fresh_topic(stack: TestStack) -> Iterator[Callable[..., str]]:
    """Factory: ``fresh_topic(partitions=1, prefix="test")`` creates a uniquely named topic."""
    created: list[str] = []

    def create(partitions: int = 1, prefix: str = "test") -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        ensure_topic(stack.kafka_bootstrap, name, partitions)
        created.append(name)
        return name

    yield create
    if created:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
        for future in admin.delete_topics(created, operation_timeout=10).values():
            try:
                future.result(timeout=15)
            except Exception as exc:  # the broker may have been stopped by a fault test
                print(f"could not delete topic: {exc}")
