"""DuckDB over the Parquet lake: individual requests, sub-minute series, lake-only fields.

The layout, the committed-file rule and the schema are ``schemas.lake``'s, the writer's
own: the lake may be a folder or an S3 prefix. We list only the committed files of the
caller's project and of the days the range touches, so another tenant's files are never
even opened, and still filter on ``project_id`` inside. A local lake is read by DuckDB
itself; an S3 lake through a pyarrow dataset on the same filesystem the writer uses, so no
second set of credentials or extension is needed. Every event counts once: copies of an
event id (a retried batch) are dropped as billing drops them, keeping the same copy.
Timestamps leave DuckDB as epoch microseconds, which keeps time-zone libraries out of the
hot path. The lake holds what the lake writer has committed: the last seconds or minutes
may not be there yet.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import duckdb
import pyarrow.dataset as pads

from query_api.measures import AggKind, Aggregation, Value
from query_api.params import EPOCH, NO_FILTERS, WEEK, WEEK_ORIGIN, Filters, TimeRange
from query_api.problems import InvalidParameterError
from schemas.lake import (
    DEDUPE_ORDER,
    LAKE_ARROW_SCHEMA,
    LakeRoot,
    days_of,
    project_files,
    readable,
)
from schemas.storable import text_problem

# Dimension → SQL expression over the event columns (whitelist: nothing else is composed).
LAKE_EXPRESSIONS: Final = {
    "api_key": "api_key",
    "endpoint": "endpoint",
    "method": "method",
    "status_class": "(status_code // 100)",
    "status_code": "status_code",
    "country": "country",
    "function": "function",
}
REQUEST_COLUMNS: Final = (
    "event_id", "timestamp", "method", "path", "endpoint", "status_code", "latency_ms",
    "request_bytes", "response_bytes", "api_key", "ip", "user_agent", "country", "function",
    "tags",
)
_VALUE_COLUMNS: Final = {Value.LATENCY: "latency_ms", Value.REQUEST_BYTES: "request_bytes",
                         Value.RESPONSE_BYTES: "response_bytes"}
_COUNTER_SQL: Final = {
    Value.REQUESTS: "count(*)",
    Value.ERRORS: "count(*) FILTER (WHERE status_code >= 400)",
    Value.SERVER_ERRORS: "count(*) FILTER (WHERE status_code >= 500)",
}
_AGG_SQL: Final = {AggKind.SUM: "sum({c})", AggKind.MEAN: "avg({c})", AggKind.MIN: "min({c})",
                   AggKind.MAX: "max({c})", AggKind.COUNT: "count(*)"}
_STATS: Final = (
    "count(*) AS requests, count(*) FILTER (WHERE status_code >= 400) AS errors, "
    "count(*) FILTER (WHERE status_code >= 500) AS server_errors, "
    "sum(latency_ms) AS latency_sum, min(latency_ms) AS latency_min, "
    "max(latency_ms) AS latency_max, "
    "quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS percentiles, "
    "sum(request_bytes) AS bytes_in, sum(response_bytes) AS bytes_out"
)
# The project is fixed by the listing (and the WHERE), so copies share an event id.
_ONE_COPY: Final = ("QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY "
                    f"{', '.join(DEDUPE_ORDER)}) = 1")
_DATASET: Final = "lake_files"


def _measure(value: Value, agg: Aggregation) -> tuple[str, list[Any]]:
    if value in _COUNTER_SQL:
        return _COUNTER_SQL[value], []
    column = _VALUE_COLUMNS[value]
    if agg.kind is AggKind.PERCENTILE:
        return f"quantile_cont({column}, ?)", [agg.fraction]
    return _AGG_SQL[agg.kind].format(c=column), []


def encode_cursor(timestamp_us: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{timestamp_us}:{event_id}".encode()).decode()


def decode_cursor(text: str, name: str = "cursor") -> tuple[int, str]:
    refused = InvalidParameterError(name, "not a cursor returned by this API")
    try:
        ts, _, event_id = base64.urlsafe_b64decode(text.encode()).decode().partition(":")
        ts_us = int(ts)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise refused from None
    if not 0 <= ts_us < 2**63 or text_problem(event_id) is not None:
        raise refused
    return ts_us, event_id


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))


@dataclass(frozen=True, slots=True)
class RequestPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class _Source:
    """A FROM clause over one project's events (each once), and what it needs.

    ``dataset`` is what the clause reads when the lake is not local.
    """

    sql: str
    params: list[Any]
    dataset: pads.Dataset | None


class Lake:
    """One in-process DuckDB database; each query runs on its own cursor (thread-safe)."""

    def __init__(self, root: LakeRoot, *, threads: int = 2, memory_limit: str = "1GB") -> None:
        self.root = root
        self._db = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
        self._db.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def ready(self) -> bool:
        """The lake can be listed (an empty new lake is ready)."""
        return readable(self.root)

    def files(self, project_id: str, rng: TimeRange,
              modified_after: datetime | None = None) -> list[str]:
        """The committed Parquet files of this project for the days the range touches.

        ``modified_after`` skips files last written before that instant: they cannot hold
        later events, and the realtime view then opens only the newest files of the day.
        """
        return [path for day in days_of(rng.start, rng.end)
                for path in project_files(self.root, project_id, day, modified_after)]

    def _query(self, source: _Source, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.cursor()
        try:
            if source.dataset is not None:
                cur.register(_DATASET, source.dataset)
            cur.execute(sql, list(params))
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            cur.close()

    def _source(self, project_id: str, rng: TimeRange, filters: Filters,
                modified_after: datetime | None = None) -> _Source | None:
        files = self.files(project_id, rng, modified_after)
        if not files:
            return None
        where = ['project_id = ?', '"timestamp" >= ?', '"timestamp" < ?']
        params: list[Any] = [project_id, rng.start, rng.end]
        for dim in sorted(filters.values):
            values = filters.values[dim]
            where.append(f"{LAKE_EXPRESSIONS[dim]} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        dataset = None
        if self.root.is_local:
            # By name: files written before a column was added read it as NULL; the
            # folder names are the contract's, not columns.
            scan = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
            params.insert(0, files)
        else:
            dataset = pads.dataset(files, filesystem=self.root.fs, format="parquet",
                                   schema=LAKE_ARROW_SCHEMA)
            scan = _DATASET
        # Copies have the same timestamp and fields, so filtering first keeps the same rows.
        sql = f"(SELECT * FROM {scan} WHERE {' AND '.join(where)} {_ONE_COPY}) AS one_copy"  # noqa: S608
        return _Source(sql, params, dataset)

    def breakdown(self, project_id: str, rng: TimeRange, dims: Sequence[str],
                  filters: Filters = NO_FILTERS, *, limit: int = 100,
                  modified_after: datetime | None = None) -> list[dict[str, Any]]:
        """Statistics (exact percentiles) per value of ``dims``, busiest first."""
        source = self._source(project_id, rng, filters, modified_after)
        if source is None:
            return []
        cols = ", ".join(f"{LAKE_EXPRESSIONS[d]} AS {d}" for d in dims)
        group = ", ".join(str(i + 1) for i in range(len(dims)))
        return self._query(
            source, f"SELECT {cols}, {_STATS} FROM {source.sql} GROUP BY {group} "  # noqa: S608
            f"ORDER BY requests DESC, {group} LIMIT ?", [*source.params, limit])

    def grouped_series(self, project_id: str, rng: TimeRange, step: int, value: Value,
                       agg: Aggregation, group: Sequence[str], filters: Filters = NO_FILTERS,
                       *, max_groups: int = 50) -> list[dict[str, Any]]:
        """``ts`` (datetime), group columns and ``value`` per bucket of ``step`` seconds."""
        source = self._source(project_id, rng, filters)
        if source is None:
            return []
        frm, params = source.sql, source.params
        origin_us = int(((WEEK_ORIGIN if step % WEEK == 0 else EPOCH) - EPOCH).total_seconds()
                        * 1_000_000)
        step_us = step * 1_000_000
        measure, measure_params = _measure(value, agg)
        names = "".join(f", {d}" for d in group)
        if any(d not in LAKE_EXPRESSIONS for d in group):
            raise ValueError(f"not lake dimensions: {group}")
        # Only whitelisted names and fixed text are composed below; values are parameters.
        base = f"WITH e AS (SELECT *, (status_code // 100) AS status_class FROM {frm})"  # noqa: S608
        args: list[Any] = list(params)
        join = ""
        if group:
            base += (f", top AS (SELECT {', '.join(group)} FROM e "  # noqa: S608
                     "GROUP BY ALL ORDER BY count(*) DESC LIMIT ?)")
            join = f" SEMI JOIN top USING ({', '.join(group)})"
            args.append(max_groups)
        sql = (f"{base} SELECT ((epoch_us(\"timestamp\") - ?) // ?) * ? + ? "  # noqa: S608
               f"AS ts_us{names}, {measure} AS value FROM e{join} GROUP BY ALL")
        args += [origin_us, step_us, step_us, origin_us, *measure_params]
        rows = self._query(source, sql + " ORDER BY 1", args)
        for row in rows:
            row["ts"] = from_us(row.pop("ts_us"))
        return rows

    def requests(self, project_id: str, rng: TimeRange, filters: Filters, *, limit: int,
                 cursor: str | None = None,
                 min_latency_ms: float | None = None) -> RequestPage:
        """Individual requests, newest first, ``limit`` per page, keyset pagination."""
        source = self._source(project_id, rng, filters)
        if source is None:
            return RequestPage([], None)
        where = ["TRUE"]
        params = list(source.params)
        if cursor:
            ts_us, event_id = decode_cursor(cursor)
            where.append('(epoch_us("timestamp") < ? OR '
                         '(epoch_us("timestamp") = ? AND event_id < ?))')
            params += [ts_us, ts_us, event_id]
        if min_latency_ms is not None:
            where.append("latency_ms >= ?")
            params.append(min_latency_ms)
        cols = ", ".join('epoch_us("timestamp") AS ts_us' if c == "timestamp" else c
                         for c in REQUEST_COLUMNS)
        rows = self._query(
            source, f"SELECT {cols} FROM {source.sql} WHERE {' AND '.join(where)} "  # noqa: S608
            'ORDER BY "timestamp" DESC, event_id DESC LIMIT ?', [*params, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        for row in rows:
            ts_us = row.pop("ts_us")
            row["timestamp_us"] = ts_us
            row["tags"] = _tags(row.get("tags"))
        next_cursor = (encode_cursor(rows[-1]["timestamp_us"], rows[-1]["event_id"])
                       if more and rows else None)
        return RequestPage(rows, next_cursor)


def _tags(value: Any) -> dict[str, str]:
    """DuckDB gives a MAP as a dict, or as ``{"key": [...], "value": [...]}`` in some versions."""
    if not value:
        return {}
    if isinstance(value, dict) and set(value) == {"key", "value"} and isinstance(
            value["key"], list):
        return dict(zip(value["key"], value["value"], strict=False))
    return dict(value)
