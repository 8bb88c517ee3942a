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
from speed_layer.sketches import DigestParts

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


def slice_digests(parts: DigestParts, start: int, stop: int) -> DigestParts:
    """The sketches of windows ``start:stop`` (centroids are flat, ``sizes`` per window)."""
    bounds = [0, *parts.sizes.cumsum().tolist()]
    lo, hi = bounds[start], bounds[stop]
    return DigestParts(parts.means[lo:hi], parts.counts[lo:hi], parts.sizes[start:stop],
                       parts.compression)


def slice_metrics(rows: MetricRows, start: int, stop: int) -> MetricRows:
    return MetricRows(
        bucket_us=rows.bucket_us[start:stop], project_id=rows.project_id[start:stop],
        api_key=rows.api_key[start:stop], endpoint=rows.endpoint[start:stop],
        method=rows.method[start:stop], status_class=rows.status_class[start:stop],
        request_count=rows.request_count[start:stop],
        error_count=rows.error_count[start:stop],
        server_error_count=rows.server_error_count[start:stop],
        latency_sum=rows.latency_sum[start:stop], latency_min=rows.latency_min[start:stop],
        latency_max=rows.latency_max[start:stop], bytes_in=rows.bytes_in[start:stop],
        bytes_out=rows.bytes_out[start:stop],
        digest=slice_digests(rows.digest, start, stop))


def slice_late(rows: LateRows, start: int, stop: int) -> LateRows:
    return LateRows(topic=rows.topic, partition=rows.partition,
                    offset=rows.offset[start:stop], project_id=rows.project_id[start:stop],
                    api_key=rows.api_key[start:stop], bucket_us=rows.bucket_us[start:stop])


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


def series_key(rows: MetricRows, i: int) -> str:
    """The window of row ``i``: its minute and series, as one readable string."""
    minute = datetime.fromtimestamp(int(rows.bucket_us[i]) / 1e6, UTC).isoformat()
    return "window " + "|".join([minute, str(rows.project_id[i]), str(rows.api_key[i]),
                                 str(rows.endpoint[i]), str(rows.method[i]),
                                 str(int(rows.status_class[i]))])


def refused_letter(emission: Emission, exc: BaseException, topic: str) -> DeadLetter:
    """The dead letter of a one-row emission PostgreSQL refused."""
    reason = f"PostgreSQL refused the row: {type(exc).__name__}: {first_line(exc)}"
    if emission.metrics is not None and len(emission.metrics):
        rows = emission.metrics
        value = {name: getattr(rows, name)[0].item() if hasattr(getattr(rows, name)[0], "item")
                 else getattr(rows, name)[0]
                 for name in ("bucket_us", "project_id", "api_key", "endpoint", "method",
                              "status_class", "request_count", "error_count",
                              "server_error_count", "latency_sum", "latency_min",
                              "latency_max", "bytes_in", "bytes_out")}
        return DeadLetter(
            component=COMPONENT, reason=f"metrics_1m {reason}", kind="unstorable",
            project_id=str(rows.project_id[0]), topic=topic, partition=emission.partition,
            event_id=series_key(rows, 0),
            key=record_key(str(rows.project_id[0]), str(rows.api_key[0])),
            value=json.dumps(value).encode())
    assert emission.late is not None  # noqa: S101 - a one-row emission holds one of them
    late = emission.late
    return DeadLetter(
        component=COMPONENT, reason=f"late_events {reason}", kind="unstorable",
        project_id=late.project_id[0], topic=late.topic, partition=late.partition,
        offset=int(late.offset[0]),
        key=record_key(late.project_id[0], late.api_key[0]),
        value=json.dumps({"project_id": late.project_id[0], "api_key": late.api_key[0],
                          "bucket_us": int(late.bucket_us[0])}).encode())
