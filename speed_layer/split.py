"""Cutting a refused write into halves until the rows PostgreSQL refuses are alone.

Pure helpers of ``MetricsWriter``: which errors are about the data (split) and which
about PostgreSQL itself (wait), how emissions and their rows are halved (order kept, so
a window's newest value is still written last), and the dead letter of a refused row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import psycopg

from schemas.codec import record_key
from schemas.dead_letters import DeadLetter
from speed_layer.items import Emission, LateRows, MetricRows

COMPONENT: Final = "speed_layer"

# The rows themselves are refused: text PostgreSQL cannot hold, a digest it cannot parse,
# a value out of range, a constraint. Splitting finds them.
DATA_ERRORS: Final = (psycopg.DataError, psycopg.IntegrityError)
# Everything else is about PostgreSQL, not the rows (gone, shutting down, a missing
# table): waiting is the only answer that neither loses nor crash-loops.
WAIT_ERRORS: Final = (psycopg.OperationalError, psycopg.InterfaceError,
                      psycopg.ProgrammingError, psycopg.InternalError,
                      psycopg.NotSupportedError)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def emission_rows(emission: Emission) -> int:
    return (len(emission.metrics) if emission.metrics is not None else 0) + (
        len(emission.late) if emission.late is not None else 0)


def rows_of(emissions: Sequence[Emission]) -> int:
    return sum(emission_rows(e) for e in emissions)


def slice_metrics(rows: MetricRows, start: int, stop: int) -> MetricRows:
    return rows.slice(start, stop - start)


def slice_late(rows: LateRows, start: int, stop: int) -> LateRows:
    return LateRows(topic=rows.topic, partition=rows.partition,
                    rows=rows.rows.slice(start, stop - start))


def halves(emissions: list[Emission]) -> tuple[list[Emission], list[Emission]]:
    """Two non-empty parts, in order: emissions first, then one emission's rows."""
    if len(emissions) > 1:
        mid = len(emissions) // 2
        return emissions[:mid], emissions[mid:]
    (e,) = emissions
    n = len(e.metrics) if e.metrics is not None else 0
    m = len(e.late) if e.late is not None else 0
    if n and m:
        return [Emission(e.partition, metrics=e.metrics)], [Emission(e.partition, late=e.late)]
    if n:
        assert e.metrics is not None  # noqa: S101 - n > 0
        return ([Emission(e.partition, metrics=slice_metrics(e.metrics, 0, n // 2))],
                [Emission(e.partition, metrics=slice_metrics(e.metrics, n // 2, n))])
    assert e.late is not None  # noqa: S101 - m > 0
    return ([Emission(e.partition, late=slice_late(e.late, 0, m // 2))],
            [Emission(e.partition, late=slice_late(e.late, m // 2, m))])


def series_key(row: dict[str, object]) -> str:
    """The window of an emitted row: its minute and series, as one readable string."""
    minute = datetime.fromtimestamp(int(row["bucket_us"]) / 1e6, UTC).isoformat()  # type: ignore[call-overload]
    return "window " + "|".join([minute, *(str(row[c]) for c in (
        "project_id", "api_key", "endpoint", "method", "status_class"))])


def refused_letter(emission: Emission, exc: BaseException, topic: str) -> DeadLetter:
    """The dead letter of a one-row emission PostgreSQL refused (one row: to_pylist)."""
    reason = f"PostgreSQL refused the row: {type(exc).__name__}: {first_line(exc)}"
    if emission.metrics is not None and emission.metrics.num_rows:
        row = emission.metrics.slice(0, 1).to_pylist()[0]
        value = {k: v for k, v in row.items() if not k.startswith("digest_")}
        project, api_key = str(row["project_id"]), str(row["api_key"])
        return DeadLetter(
            component=COMPONENT, reason=f"metrics_1m {reason}", kind="unstorable",
            project_id=project, topic=topic, partition=emission.partition,
            event_id=series_key(row), key=record_key(project, api_key),
            value=json.dumps(value).encode())
    assert emission.late is not None  # noqa: S101 - a one-row emission holds one of them
    late = emission.late
    one = late.rows.slice(0, 1).to_pylist()[0]
    return DeadLetter(
        component=COMPONENT, reason=f"late_events {reason}", kind="unstorable",
        project_id=one["project_id"], topic=late.topic, partition=late.partition,
        offset=int(one["kafka_offset"]),
        key=record_key(one["project_id"], one["api_key"]),
        value=json.dumps({"project_id": one["project_id"], "api_key": one["api_key"],
                          "bucket_us": int(one["bucket_us"])}).encode())
