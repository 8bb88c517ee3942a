"""Brings the local stack up and down as one unit, and reports its health.

``up`` is idempotent (running servers are left alone), starts Kafka and PostgreSQL side by
side to halve the wait, and records the ports in ``<state>/stack.json`` so that ``down``
and ``status`` find the servers again without being told. A server given through
``TURNSTILE_KAFKA_BOOTSTRAP`` / ``TURNSTILE_DATABASE_URL`` is used instead of a local one.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from schemas.settings import (
    DEFAULT_KAFKA_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_POSTGRES_PORT,
    KafkaSettings,
)
from turnstile_cli.stack.kafka import KafkaBroker, broker_answers
from turnstile_cli.stack.postgres import PostgresServer, database_answers
from turnstile_cli.stack.process import StackError
from turnstile_cli.stack.topics import ensure_topics

_CONFIG_FILE = "stack.json"
_PORT_FIELDS = ("kafka_port", "kafka_controller_port", "postgres_port")
KAFKA_ENV = "TURNSTILE_KAFKA_BOOTSTRAP"
DATABASE_ENV = "TURNSTILE_DATABASE_URL"


@dataclass(frozen=True)
class StackConfig:
    """Where the local servers keep their files and listen; or which servers to use instead."""

    state_dir: Path
    kafka_port: int = DEFAULT_KAFKA_PORT
    kafka_controller_port: int = DEFAULT_KAFKA_CONTROLLER_PORT
    postgres_port: int = DEFAULT_POSTGRES_PORT
    external_kafka: str | None = None
    external_database: str | None = None

    @classmethod
    def load(
        cls, state_dir: Path, environ: Mapping[str, str] | None = None, **ports: int | None
    ) -> StackConfig:
        """Ports given here win, then those recorded by the last ``up``, then the defaults."""
        env = os.environ if environ is None else environ
        config = cls(state_dir=state_dir, external_kafka=env.get(KAFKA_ENV) or None,
                     external_database=env.get(DATABASE_ENV) or None)
        recorded = state_dir / _CONFIG_FILE
        saved = json.loads(recorded.read_text()) if recorded.exists() else {}
        chosen = {name: ports.get(name) or saved.get(name) or getattr(config, name)
                  for name in _PORT_FIELDS}
        return replace(config, kafka_port=int(chosen["kafka_port"]),
                       kafka_controller_port=int(chosen["kafka_controller_port"]),
                       postgres_port=int(chosen["postgres_port"]))

    def save(self) -> None:
        fields = {name: getattr(self, name) for name in _PORT_FIELDS}
        (self.state_dir / _CONFIG_FILE).write_text(json.dumps(fields, indent=2) + "\n")


@dataclass(frozen=True)
class ComponentStatus:
    """One row of ``turnstile stack status``."""

    component: str
    pid: int | None
    address: str
    healthy: bool
    managed: bool
    log: Path | None = None


class LocalStack:
    """The Kafka broker and PostgreSQL server of one state folder."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.kafka = KafkaBroker(config.state_dir, config.kafka_port, config.kafka_controller_port)
        self.postgres = PostgresServer(config.state_dir, config.postgres_port)

    @property
    def kafka_bootstrap(self) -> str:
        return self.config.external_kafka or self.kafka.bootstrap

    @property
    def database_url(self) -> str:
        return self.config.external_database or self.postgres.database_url

    def up(self, kafka_settings: KafkaSettings | None = None,
           timeout: float = 90.0) -> list[ComponentStatus]:
        """Start what is not running, check external servers, create the topics."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self.config.save()
            starts = []
            with ThreadPoolExecutor(max_workers=2) as pool:
                if self.config.external_kafka is None:
                    starts.append(pool.submit(self.kafka.start, timeout))
                if self.config.external_database is None:
                    starts.append(pool.submit(self.postgres.start, timeout))
            for start in starts:
                start.result()
            self._check_external()
            ensure_topics(kafka_settings or KafkaSettings(), self.kafka_bootstrap)
        return self.status()

    def down(self, timeout: float = 30.0) -> list[ComponentStatus]:
        """Stop the local servers of this state folder (external ones are never touched)."""
        if not self.config.state_dir.exists():
            return self.status()
        with self._locked(), ThreadPoolExecutor(max_workers=2) as pool:
            stops = [pool.submit(server.stop, timeout) for server in (self.kafka, self.postgres)]
            for stop in stops:
                stop.result()
        return self.status()

    def status(self) -> list[ComponentStatus]:
        rows = []
        if self.config.external_kafka is not None:
            rows.append(ComponentStatus("kafka (external)", None, self.config.external_kafka,
                                        broker_answers(self.config.external_kafka), False))
        if self.config.external_kafka is None or self.kafka.is_running():
            pid = self.kafka.pid
            rows.append(ComponentStatus("kafka", pid, self.kafka.bootstrap,
                                        pid is not None and self.kafka.is_healthy(), True,
                                        self.kafka.log_dir / "server.log"))
        if self.config.external_database is not None:
            rows.append(ComponentStatus("postgres (external)", None, _redact(self.database_url),
                                        database_answers(self.database_url), False))
        if self.config.external_database is None or self.postgres.is_running():
            pid = self.postgres.pid
            rows.append(ComponentStatus("postgres", pid, self.postgres.database_url,
                                        pid is not None and self.postgres.is_healthy(), True,
                                        self.postgres.log_file))
        return rows

    def _check_external(self) -> None:
        if self.config.external_kafka and not broker_answers(self.config.external_kafka, 10.0):
            raise StackError(f"{KAFKA_ENV}={self.config.external_kafka} does not answer")
        if self.config.external_database and not database_answers(self.database_url, 10.0):
            raise StackError(f"{DATABASE_ENV} ({_redact(self.database_url)}) does not answer")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Two `stack up` in one state folder would otherwise start two brokers on one log dir.
        with (self.config.state_dir / ".stack.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _redact(url: str) -> str:
    """Hide a password in a libpq URL before it is printed."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"
