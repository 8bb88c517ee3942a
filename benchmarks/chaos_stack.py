"""The chaos run's own stack: servers and supervised services in a temp folder, free ports.

Everything goes through the product's own commands (``turnstile stack up --services``,
``stack down``) or the same classes they use, so what the chaos run sees is what an
operator would; nothing here is a test double.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from confluent_kafka import Consumer, TopicPartition

from schemas.settings import KafkaSettings
from turnstile_cli.stack import LocalStack, StackConfig, free_ports
from turnstile_cli.stack.status import ComponentRow, collect_status

CLI = (sys.executable, "-m", "turnstile_cli.main")
LAKE_GROUP = "turnstile-lake-writer"


@dataclass(frozen=True)
class ChaosStack:
    """Where the run's servers and services listen."""

    state_dir: Path
    kafka_port: int
    controller_port: int
    postgres_port: int
    gateway_port: int
    query_port: int
    speed_ops_port: int
    lake_ops_port: int
    billing_ops_port: int
    alerting_ops_port: int

    @classmethod
    def on_free_ports(cls, state_dir: Path) -> ChaosStack:
        return cls(state_dir, *free_ports(9))

    @property
    def local(self) -> LocalStack:
        # environ={}: never an external server named by the caller's environment.
        return LocalStack(StackConfig.load(
            self.state_dir, environ={}, kafka_port=self.kafka_port,
            kafka_controller_port=self.controller_port, postgres_port=self.postgres_port))

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def database_url(self) -> str:
        return self.local.database_url

    @property
    def bootstrap(self) -> str:
        return self.local.kafka_bootstrap

    @property
    def lake_root(self) -> Path:
        return (self.state_dir / "lake").resolve()

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The caller's environment without any server address of its own, plus ``extra``."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TURNSTILE_KAFKA_", "TURNSTILE_DATABASE_", "TURNSTILE_STACK_"))}
        env["TURNSTILE_STATE_DIR"] = str(self.state_dir.resolve())
        env.update(extra or {})
        return env

    def job_env(self) -> dict[str, str]:
        """For one-off jobs (billing run): the servers and the lake."""
        return self.env({"TURNSTILE_KAFKA_BOOTSTRAP": self.bootstrap,
                         "TURNSTILE_DATABASE_URL": self.database_url,
                         "TURNSTILE_LAKE_URI": str(self.lake_root)})

    def up(self, service_env: Mapping[str, str], timeout: float = 180.0) -> float:
        """``turnstile stack up --services`` on this stack's ports; returns seconds taken."""
        started = time.monotonic()
        args = [*CLI, "stack", "up", "--services", "--state-dir", str(self.state_dir),
                "--kafka-port", str(self.kafka_port),
                "--kafka-controller-port", str(self.controller_port),
                "--postgres-port", str(self.postgres_port),
                "--gateway-port", str(self.gateway_port), "--query-port", str(self.query_port),
                "--speed-ops-port", str(self.speed_ops_port),
                "--lake-ops-port", str(self.lake_ops_port),
                "--billing-ops-port", str(self.billing_ops_port),
                "--alerting-ops-port", str(self.alerting_ops_port)]
        done = subprocess.run(args, env=self.env(service_env), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"stack up failed ({done.returncode}):\n{done.stdout[-3000:]}"
                               f"\n{done.stderr[-3000:]}")
        return time.monotonic() - started

    def down(self) -> None:
        subprocess.run([*CLI, "stack", "down", "--state-dir", str(self.state_dir)],
                       env=self.env(), capture_output=True, timeout=120, check=False)

    # -- observation --------------------------------------------------------------------
    def status(self) -> dict[str, ComponentRow]:
        return {row.component: row for row in collect_status(self.local)}

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True, connect_timeout=3)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One query on a fresh connection (PostgreSQL may have restarted in between)."""
        with self.connect() as conn:
            return list(conn.execute(sql, params).fetchall())

    def lake_committed(self, topic: str | None = None) -> tuple[int, int]:
        """(committed offsets of the lake writer, high watermarks) summed over partitions."""
        topic = topic or KafkaSettings().events_topic
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": LAKE_GROUP,
                             "enable.auto.commit": False, "log_level": 0})
        try:
            meta = consumer.list_topics(topic, timeout=5)
            parts = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
            committed = consumer.committed(parts, timeout=5)
            done = sum(max(tp.offset, 0) for tp in committed)
            high = sum(consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in parts)
            return done, high
        finally:
            consumer.close()


def ready(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False
