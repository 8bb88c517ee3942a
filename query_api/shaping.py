"""Turn repository rows into the flat JSON objects the API returns (pure functions).

Every statistics object has the same flat fields, so a list of them is also a CSV table:

    requests, errors, server_errors, error_rate, server_error_rate,
    latency_avg_ms, latency_min_ms, latency_max_ms, latency_p50_ms, latency_p95_ms,
    latency_p99_ms, bytes_in, bytes_out

Rates are fractions (0.0125 = 1.25 %); latencies are null when there were no requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from query_api.params import TimeRange, bucket_starts, status_class_label

STAT_FIELDS: Final = (
    "requests", "errors", "server_errors", "error_rate", "server_error_rate",
    "latency_avg_ms", "latency_min_ms", "latency_max_ms", "latency_p50_ms", "latency_p95_ms",
    "latency_p99_ms", "bytes_in", "bytes_out",
)
_PCT_FIELDS: Final = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def rate(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def iso(t: datetime) -> str:
    """UTC instant as RFC 3339 with a ``Z``: one spelling everywhere in the API."""
    return t.isoformat().replace("+00:00", "Z")


def stats(row: Mapping[str, Any]) -> dict[str, Any]:
    """The flat statistics of one repository row (``totals``/``breakdown``/``series``)."""
    requests = int(row.get("requests") or 0)
    errors = int(row.get("errors") or 0)
    server_errors = int(row.get("server_errors") or 0)
    pcts: Sequence[float | None] = row.get("percentiles") or (None, None, None)
    has = requests > 0
    out: dict[str, Any] = {
        "requests": requests,
        "errors": errors,
        "server_errors": server_errors,
        "error_rate": rate(errors, requests),
        "server_error_rate": rate(server_errors, requests),
        "latency_avg_ms": _round(float(row["latency_sum"]) / requests) if has else None,
        "latency_min_ms": _round(row.get("latency_min")) if has else None,
        "latency_max_ms": _round(row.get("latency_max")) if has else None,
    }
    for name, value in zip(_PCT_FIELDS, pcts, strict=False):
        out[name] = _round(value) if has else None
    out["bytes_in"] = int(row.get("bytes_in") or 0)
    out["bytes_out"] = int(row.get("bytes_out") or 0)
    return out


def labelled(rows: Iterable[Mapping[str, Any]], dims: Sequence[str]) -> list[dict[str, Any]]:
    """Breakdown rows → ``{dim: value, …stats}``; status classes read as ``"5xx"``."""
    out = []
    for row in rows:
        item: dict[str, Any] = {}
        for dim in dims:
            item[dim] = status_class_label(row[dim]) if dim == "status_class" else row[dim]
        item.update(stats(row))
        out.append(item)
    return out


def counts_by(rows: Iterable[Mapping[str, Any]], dim: str) -> dict[str, int]:
    """``{"GET": 120, …}`` or ``{"2xx": 118, …}`` from a one-dimension breakdown."""
    out: dict[str, int] = {}
    for row in rows:
        key = status_class_label(row[dim]) if dim == "status_class" else str(row[dim])
        out[key] = int(row["requests"] or 0)
    return out


def filled_series(rows: Iterable[Mapping[str, Any]], rng: TimeRange,
                  step: int) -> list[dict[str, Any]]:
    """One point per bucket of the aligned range, zeros where no row exists."""
    by_ts = {row["ts"]: row for row in rows}
    empty: dict[str, Any] = {}
    return [{"ts": iso(ts), **stats(by_ts.get(ts, empty))} for ts in bucket_starts(rng, step)]


def value_groups(
    rows: Iterable[Mapping[str, Any]], group: Sequence[str], rng: TimeRange, step: int,
    *, fill_zero: bool,
) -> dict[str, list[list[Any]]]:
    """APInalytics ``groups``: ``{key: [[ts, value], …]}``; key ``"total"`` when ungrouped.

    A key of several fields joins their values with ``|``. Counters are zero-filled; other
    measures leave empty buckets out (no data is not a zero latency).
    """
    series: dict[str, dict[datetime, float | None]] = {}
    for row in rows:
        key = "|".join(
            status_class_label(row[d]) if d == "status_class" else str(row[d]) for d in group
        ) or "total"
        value = row["value"]
        series.setdefault(key, {})[row["ts"]] = None if value is None else _round(value, 6)
    if not group and not series and fill_zero:
        series["total"] = {}
    out: dict[str, list[list[Any]]] = {}
    starts = bucket_starts(rng, step)
    for key, points in series.items():
        if fill_zero:
            out[key] = [[iso(ts), points.get(ts, 0.0)] for ts in starts]
        else:
            out[key] = [[iso(ts), points[ts]] for ts in starts if points.get(ts) is not None]
    return out
