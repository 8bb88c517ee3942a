"""Dead letters: what a consumer could not process or store, set aside with the reason.

Every consumer (speed layer, lake writer, billing, aggregates, alerting) refuses a bad record
or row the same way, so the flow goes on and nothing is lost silently:

1. the original record goes to the dead-letter topic (``schemas.topics.DEAD_LETTER_TOPIC``)
   with the headers below (reason, component, origin, project), readable by any tool;
2. a row goes to the ``dead_letters`` table (one per record or row; a replay after a crash
   adds nothing), which the query API serves per project;
3. ``DEAD_LETTERS`` counts it per component, project and reason class for Prometheus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from prometheus_client import Counter

REASON_HEADER: Final = "turnstile-dead-letter-reason"
ORIGIN_HEADER: Final = "turnstile-origin"  # "<topic>/<partition>/<offset>"
COMPONENT_HEADER: Final = "turnstile-component"
PROJECT_HEADER: Final = "turnstile-project"

MAX_REASON_CHARS: Final = 1000
MAX_SAMPLE_CHARS: Final = 512

DEAD_LETTERS: Final = Counter(
    "turnstile_dead_letters",
    "Records or rows set aside because they could not be processed or stored.",
    ["component", "project", "kind"],
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused record or row: who refused it, why, and where it came from."""

    component: str
    reason: str
    kind: str = "invalid"  # a short class of the reason, for the metric's label
    project_id: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    event_id: str | None = None
    key: bytes | None = None
    value: bytes | None = None

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


def _printable(text: str, limit: int) -> str:
    """Text PostgreSQL can store (no U+0000, no lone surrogates), cut to ``limit``."""
    cut = text[:limit]
    return cut.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def sample_of(value: bytes | None) -> str | None:
    """The start of a payload as storable text (bad bytes escaped), for inspection."""
    if value is None:
        return None
    return _printable(value[: MAX_SAMPLE_CHARS * 4].decode("utf-8", "backslashreplace"),
                      MAX_SAMPLE_CHARS)


def dlq_headers(letter: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    """The headers of the dead-letter topic's copy of a record."""
    headers: list[tuple[str, str | bytes | None]] = [
        (REASON_HEADER, _printable(letter.reason, MAX_REASON_CHARS).encode()),
        (COMPONENT_HEADER, letter.component.encode()),
        (ORIGIN_HEADER, letter.origin.encode()),
    ]
    if letter.project_id is not None:
        headers.append((PROJECT_HEADER, letter.project_id.encode("utf-8", "backslashreplace")))
    return headers


_INSERT: Final = """
INSERT INTO dead_letters (component, project_id, reason, kafka_topic, kafka_partition,
                          kafka_offset, event_id, payload_sample)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT ON CONSTRAINT dead_letters_origin_once DO NOTHING"""


def _row(letter: DeadLetter) -> tuple[Any, ...]:
    return (
        letter.component,
        None if letter.project_id is None else _printable(letter.project_id, 256),
        _printable(letter.reason, MAX_REASON_CHARS),
        letter.topic,
        letter.partition,
        letter.offset,
        None if letter.event_id is None else _printable(letter.event_id, 128),
        sample_of(letter.value),
    )


def record_dead_letters(conn: psycopg.Connection[Any], letters: Sequence[DeadLetter]) -> None:
    """Insert the letters' rows (in the caller's transaction) and count them."""
    if not letters:
        return
    with conn.cursor() as cur:
        cur.executemany(_INSERT, [_row(letter) for letter in letters])
    count_dead_letters(letters)


def count_dead_letters(letters: Sequence[DeadLetter]) -> None:
    """Count letters in the Prometheus counter (``record_dead_letters`` does this itself)."""
    for letter in letters:
        DEAD_LETTERS.labels(letter.component, letter.project_id or "", letter.kind).inc()
