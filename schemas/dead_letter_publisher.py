"""Sending dead letters to the dead-letter topic and the ``dead_letters`` table, durably.

Shared by every consumer so each refuses a record the same way (``schemas.dead_letters``
defines the letter, its headers and its row). ``publish`` returns only once Kafka has
acknowledged every letter and the rows are committed; while Kafka or PostgreSQL is gone
it waits (capped backoff, one log line per attempt) instead of raising, so a consumer
that must not commit past a dead letter simply pauses. Only undelivered letters are sent
again, so an outage adds no copies to the topic; the table ignores repeats by itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from confluent_kafka import KafkaError, KafkaException, Producer

from schemas.consumer_ops import ComponentOps
from schemas.dead_letters import DeadLetter, dlq_headers, record_dead_letters
from schemas.retry import call_until_done, pg_unreachable, short_cause

log = logging.getLogger(__name__)

_DELIVERY_TIMEOUT_MS: Final = 10_000


class DeadLetterPublisher:
    """One producer and one connection, opened on first use; thread-safe ``publish``."""

    def __init__(self, *, bootstrap: str | None, topic: str, dsn: str,
                 ops: ComponentOps | None = None, stop: threading.Event | None = None) -> None:
        self.bootstrap = bootstrap  # None: the table only (rows that never were records)
        self.topic = topic
        self.dsn = dsn
        self.ops = ops
        self.stop = stop
        self._producer: Producer | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Topic first (acknowledged), then the table; waits out outages of either."""
        if not letters:
            return
        with self._lock:
            if self.bootstrap is not None:
                pending = list(letters)
                call_until_done(
                    lambda: self._produce(pending), transient=(KafkaException, BufferError),
                    describe=lambda e: f"Kafka unreachable at {self.bootstrap} "
                                       f"({short_cause(e)}) sending dead letters",
                    log=log, stop=self.stop,
                    on_failure=lambda e: self._failed("kafka"),
                    on_success=lambda: self._ok("kafka"))
            call_until_done(
                lambda: self._record(letters), transient=(psycopg.OperationalError,),
                describe=lambda e: pg_unreachable(self.dsn, e), log=log, stop=self.stop,
                on_failure=self._lost_connection, on_success=lambda: self._ok("postgres"))
        for letter in letters:
            log.warning("dead letter from %s (%s): %s", letter.component,
                        letter.origin if letter.topic else f"project {letter.project_id}",
                        letter.reason[:200])

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(10)
                self._producer = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _produce(self, pending: list[DeadLetter]) -> None:
        if self._producer is None:
            self._producer = Producer({
                "bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                "acks": "all", "message.timeout.ms": _DELIVERY_TIMEOUT_MS, "log_level": 0,
            })
        producer = self._producer
        failed: list[DeadLetter] = []
        errors: list[KafkaError] = []
        for letter in pending:
            def on_delivery(err: KafkaError | None, _msg: object,
                            letter: DeadLetter = letter) -> None:
                if err is not None:
                    failed.append(letter)
                    errors.append(err)
            producer.produce(self.topic, value=letter.value, key=letter.key,
                             headers=dlq_headers(letter), on_delivery=on_delivery)
        producer.flush(_DELIVERY_TIMEOUT_MS / 1000 + 5)
        if failed:
            pending[:] = failed
            raise KafkaException(errors[0])

    def _record(self, letters: Sequence[DeadLetter]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        conn = self._conn
        with conn.transaction():
            record_dead_letters(conn, letters)

    def _lost_connection(self, exc: BaseException) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._failed("postgres")

    def _failed(self, dependency: str) -> None:
        if self.ops is not None:
            self.ops.dependency_failed(dependency)

    def _ok(self, dependency: str) -> None:
        if self.ops is not None:
            self.ops.dependency_ok(dependency)
