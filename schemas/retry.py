"""Waiting out a real fault (PostgreSQL or Kafka gone) instead of crashing, in one log line.

A consumer that raises on a lost dependency is restarted, replays, and fails again: a
crash loop that says nothing useful. Every consumer instead waits with capped exponential
backoff, logs ONE line per attempt that names the dependency, its address and the cause
("PostgreSQL unreachable at 127.0.0.1:5432 (connection refused); retrying in 8 s"), and
resumes by itself when the dependency is back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from psycopg.conninfo import conninfo_to_dict

MAX_DELAY_S: Final = 30.0

T = TypeVar("T")


@dataclass
class Backoff:
    """Capped exponential delays: 0.5, 1, 2, 4, … up to ``cap`` seconds; ``reset`` on success."""

    first: float = 0.5
    cap: float = MAX_DELAY_S
    attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2.0 ** self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def pg_address(dsn: str) -> str:
    """``host:port`` of a libpq DSN, for log lines (never the password)."""
    try:
        info = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a log line must not fail
        return "?"
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"


_CAUSES: Final = (
    ("connection refused", "connection refused"),
    ("timeout expired", "timeout"),
    ("timed out", "timeout"),
    ("terminating connection", "server shutting down"),
    ("server closed the connection", "connection lost"),
    ("consuming input failed", "connection lost"),
    ("the database system is starting up", "starting up"),
    ("the database system is shutting down", "shutting down"),
    ("no route to host", "no route to host"),
    ("could not translate host name", "unknown host"),
)


def short_cause(exc: BaseException) -> str:
    """A few words saying why a connection failed, from the driver's message."""
    text = str(exc).strip()
    lowered = text.lower()
    for needle, cause in _CAUSES:
        if needle in lowered:
            return cause
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:160]


def pg_unreachable(dsn: str, exc: BaseException) -> str:
    return f"PostgreSQL unreachable at {pg_address(dsn)} ({short_cause(exc)})"


def retry_line(problem: str, delay: float) -> str:
    return f"{problem}; retrying in {delay:.0f} s" if delay >= 1 else \
        f"{problem}; retrying in {delay:.1f} s"


def call_until_done(
    fn: Callable[[], T],
    *,
    transient: tuple[type[BaseException], ...],
    describe: Callable[[BaseException], str],
    log: logging.Logger,
    stop: threading.Event | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
    on_success: Callable[[], None] | None = None,
    backoff: Backoff | None = None,
) -> T:
    """``fn()``, retried while it raises one of ``transient``, with a log line per attempt.

    ``stop`` (when set) ends the waiting by re-raising the last error; anything not in
    ``transient`` is raised at once.
    """
    delays = backoff or Backoff()
    failed = False
    while True:
        try:
            result = fn()
        except transient as exc:
            failed = True
            if on_failure is not None:
                on_failure(exc)
            delay = delays.next_delay()
            log.warning(retry_line(describe(exc), delay))
            if stop is not None:
                if stop.wait(delay):
                    raise
            else:
                threading.Event().wait(delay)
            continue
        if failed:
            log.info("recovered after %d attempt(s)", delays.attempt + 1)
        delays.reset()
        if on_success is not None:
            on_success()
        return result
