"""All SQL of the query API: rollup statistics, series, billing, quotas.

The rollups are ``metrics_1m`` (hypertable) and its continuous aggregates ``metrics_1h`` /
``metrics_1d`` with real-time aggregation, so every level includes the open buckets and a
range's totals are the same whichever level serves it. Each query reads, of the chosen
bucket width, the smallest aggregate that has the columns it groups and filters on: per
endpoint or per consumer (project-wide, far fewer series and digests) before the full
series. Their statistics are composed
from ``schemas.metric_tables`` (each measure merged as the aggregates merge it).
Every statement is parameterised; the only identifiers composed into SQL are the rollup
table names and dimension columns from the whitelists in ``params``, passed through
``sql.Identifier``, and measure expressions of ``schemas.metric_tables``. Every query is
scoped by ``project_id`` first, which is also the leading column of every index, so a
key can never read another tenant's rows.
Percentiles merge the per-bucket t-digests inside PostgreSQL (``tdigest_percentile``
aggregate), so no digest ever travels to Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from query_api.measures import VALUE_MEASURES, AggKind, Aggregation, Value
from query_api.params import (
    EPOCH,
    NO_FILTERS,
    ROLLUP_DIMENSIONS,
    WEEK,
    WEEK_ORIGIN,
    Filters,
    Rollup,
    TimeRange,
)
from schemas.metric_tables import MEASURE_BY_NAME, MEASURES, Merge, smallest_table

Conn = psycopg.Connection[Any]
Row = dict[str, Any]

PERCENTILES: Final = (0.5, 0.95, 0.99)

# The statistics every breakdown and series carries, from which ``shaping`` derives rates:
# every measure but the digest, merged, under the names ``shaping`` reads.
_STAT_NAMES: Final = {"request_count": "requests", "error_count": "errors",
                      "server_error_count": "server_errors"}
_STATS: Final = sql.SQL(", ").join(
    sql.SQL("{} AS {}").format(sql.SQL(m.merged()), sql.Identifier(_STAT_NAMES.get(m.name,
                                                                                  m.name)))
    for m in MEASURES if m.merge is not Merge.TDIGEST
)
_DIGEST: Final = next(m.name for m in MEASURES if m.merge is Merge.TDIGEST)
_PCTS: Final = sql.SQL("tdigest_percentile({}, %s::float8[]) AS percentiles").format(
    sql.Identifier(_DIGEST))
_REQUESTS: Final = MEASURE_BY_NAME["request_count"]


def _source(table: Rollup, columns: Iterable[str]) -> sql.Identifier:
    """The smallest table of ``table``'s bucket width that has ``columns`` (same totals)."""
    return sql.Identifier(smallest_table(table.seconds, {"project_id", *columns}).name)


def _where(project_id: str, rng: TimeRange, filters: Filters) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = [
        sql.SQL("project_id = %s"), sql.SQL("bucket >= %s"), sql.SQL("bucket < %s")]
    params: list[Any] = [project_id, rng.start, rng.end]
    for dim in sorted(filters.values):
        if dim not in ROLLUP_DIMENSIONS:
            raise ValueError(f"not a rollup dimension: {dim}")
        values = filters.values[dim]
        if len(values) == 1:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(dim)))
            params.append(values[0])
        else:
            parts.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(dim)))
            params.append(list(values))
    return sql.SQL(" AND ").join(parts), params


def _bucket_expr(table: Rollup, step: int) -> tuple[sql.Composable, list[Any]]:
    if step == table.seconds:
        return sql.SQL("bucket"), []
    origin = WEEK_ORIGIN if step % WEEK == 0 else EPOCH
    return sql.SQL("date_bin(make_interval(secs => %s), bucket, %s)"), [step, origin]


def _fetch(conn: Conn, query: sql.SQL | sql.Composed, params: Sequence[Any]) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def totals(conn: Conn, table: Rollup, project_id: str, rng: TimeRange,
           filters: Filters = NO_FILTERS) -> Row:
    """One row of statistics (with percentiles) over the whole range."""
    where, params = _where(project_id, rng, filters)
    query = sql.SQL("SELECT {stats}, {pcts} FROM {table} WHERE {where}").format(
        stats=_STATS, pcts=_PCTS, table=_source(table, filters.values), where=where)
    return _fetch(conn, query, [list(PERCENTILES), *params])[0]


def breakdown(
    conn: Conn,
    table: Rollup,
    project_id: str,
    rng: TimeRange,
    dims: Sequence[str],
    filters: Filters = NO_FILTERS,
    *,
    limit: int | None = None,
    percentiles: bool = True,
) -> list[Row]:
    """Statistics per value of ``dims`` (whitelisted), busiest first.

    Grouped by the consumer (a project has thousands) with a ``limit``, the ranking runs
    without digests and only the top rows' digests are merged, in a second statement
    filtered on their keys: merging every consumer's digests was two thirds of the
    dashboard's costliest call (benchmarks/results/dashboard_load.json). Counts are the
    same; the percentiles merge the same digests, in another order (t-digest error).
    """
    if not dims or any(d not in ROLLUP_DIMENSIONS for d in dims):
        raise ValueError(f"not rollup dimensions: {dims}")
    if percentiles and limit is not None and "api_key" in dims:
        top = breakdown(conn, table, project_id, rng, dims, filters, limit=limit,
                        percentiles=False)
        if not top:
            return top
        keys = Filters({**filters.values,
                        **{d: tuple(dict.fromkeys(row[d] for row in top)) for d in dims}})
        digests = {tuple(row[d] for d in dims): row["percentiles"]
                   for row in _percentiles(conn, table, project_id, rng, dims, keys)}
        for row in top:
            row["percentiles"] = digests.get(tuple(row[d] for d in dims))
        return top
    where, params = _where(project_id, rng, filters)
    cols = sql.SQL(", ").join(sql.Identifier(d) for d in dims)
    query = sql.SQL(
        "SELECT {cols}, {stats}{pcts} FROM {table} WHERE {where} GROUP BY {cols} "
        "ORDER BY requests DESC, {cols}{limit}"
    ).format(
        cols=cols, stats=_STATS, pcts=sql.SQL(", ") + _PCTS if percentiles else sql.SQL(""),
        table=_source(table, [*dims, *filters.values]), where=where,
        limit=sql.SQL(" LIMIT %s") if limit is not None else sql.SQL(""),
    )
    args: list[Any] = ([list(PERCENTILES)] if percentiles else []) + params
    if limit is not None:
        args.append(limit)
    return _fetch(conn, query, args)


def _percentiles(conn: Conn, table: Rollup, project_id: str, rng: TimeRange,
                 dims: Sequence[str], filters: Filters) -> list[Row]:
    """The merged digests' percentiles per value of ``dims`` (whitelisted by the caller)."""
    where, params = _where(project_id, rng, filters)
    cols = sql.SQL(", ").join(sql.Identifier(d) for d in dims)
    query = sql.SQL("SELECT {cols}, {pcts} FROM {table} WHERE {where} GROUP BY {cols}").format(
        cols=cols, pcts=_PCTS, table=_source(table, [*dims, *filters.values]), where=where)
    return _fetch(conn, query, [list(PERCENTILES), *params])


def series(conn: Conn, table: Rollup, project_id: str, rng: TimeRange, step: int,
           filters: Filters = NO_FILTERS, *, percentiles: bool = True) -> list[Row]:
    """Statistics per time bucket of ``step`` seconds (only buckets with data)."""
    where, params = _where(project_id, rng, filters)
    bucket, bucket_params = _bucket_expr(table, step)
    query = sql.SQL(
        "SELECT {bucket} AS ts, {stats}{pcts} FROM {table} WHERE {where} GROUP BY 1 ORDER BY 1"
    ).format(bucket=bucket, stats=_STATS,
             pcts=sql.SQL(", ") + _PCTS if percentiles else sql.SQL(""),
             table=_source(table, filters.values), where=where)
    args = bucket_params + ([list(PERCENTILES)] if percentiles else []) + params
    return _fetch(conn, query, args)


def _merged(name: str, cast: str = "") -> sql.Composable:
    return sql.SQL(MEASURE_BY_NAME[name].merged() + cast)


def _measure(value: Value, agg: Aggregation) -> tuple[sql.Composable, list[Any]]:
    """The SQL aggregate for one (value, aggregation) pair that the rollups can serve."""
    per_request = sql.SQL(" / nullif({}, 0)").format(_merged(_REQUESTS.name))
    if value in (Value.REQUESTS, Value.ERRORS, Value.SERVER_ERRORS):
        return _merged(VALUE_MEASURES[value][AggKind.SUM], "::float8"), []
    if agg.kind is AggKind.COUNT:
        return _merged(_REQUESTS.name, "::float8"), []
    if value is Value.LATENCY and agg.kind is AggKind.PERCENTILE:
        return sql.SQL("tdigest_percentile({}, %s::float8)").format(
            sql.Identifier(_DIGEST)), [agg.fraction]
    kind = AggKind.SUM if agg.kind is AggKind.MEAN else agg.kind
    column = VALUE_MEASURES[value].get(kind)
    if column is None:
        raise ValueError(f"rollups cannot serve {agg} of {value}")
    expr = _merged(column, "::float8")
    return (expr + per_request if agg.kind is AggKind.MEAN else expr), []


def grouped_series(
    conn: Conn,
    table: Rollup,
    project_id: str,
    rng: TimeRange,
    step: int,
    value: Value,
    agg: Aggregation,
    group: Sequence[str],
    filters: Filters = NO_FILTERS,
    *,
    max_groups: int = 50,
) -> list[Row]:
    """``ts``, the group columns and ``value`` per bucket; the busiest ``max_groups`` groups."""
    if any(d not in ROLLUP_DIMENSIONS for d in group):
        raise ValueError(f"not rollup dimensions: {group}")
    where, params = _where(project_id, rng, filters)
    bucket, bucket_params = _bucket_expr(table, step)
    measure, measure_params = _measure(value, agg)
    if not group:
        query = sql.SQL(
            "SELECT {bucket} AS ts, {measure} AS value FROM {table} WHERE {where} "
            "GROUP BY 1 ORDER BY 1"
        ).format(bucket=bucket, measure=measure, table=_source(table, filters.values), where=where)
        return _fetch(conn, query, bucket_params + measure_params + params)
    cols = sql.SQL(", ").join(sql.Identifier(d) for d in group)
    query = sql.SQL(
        "WITH top AS (SELECT {cols} FROM {table} WHERE {where} GROUP BY {cols} "
        "ORDER BY {requests} DESC LIMIT %s) "
        "SELECT {bucket} AS ts, {cols}, {measure} AS value FROM {table} JOIN top USING ({cols}) "
        "WHERE {where} GROUP BY {group_by} ORDER BY 1"
    ).format(cols=cols, table=_source(table, [*group, *filters.values]), where=where, bucket=bucket,
             measure=measure, requests=_merged(_REQUESTS.name),
             group_by=sql.SQL(", ").join([sql.SQL("1"), *(sql.Identifier(d) for d in group)]))
    return _fetch(conn, query, [*params, max_groups, *bucket_params, *measure_params, *params])


def requests_between(conn: Conn, table: Rollup, project_id: str, api_key: str,
                     start: datetime, end: datetime) -> int:
    """Exact request count of one consumer over ``[start, end)`` (quota usage)."""
    row = conn.execute(
        sql.SQL("SELECT coalesce({}, 0)::bigint FROM {} "
                "WHERE project_id = %s AND bucket >= %s AND bucket < %s AND api_key = %s"
                ).format(_merged(_REQUESTS.name), _source(table, ["api_key"])),
        (project_id, start, end, api_key),
    ).fetchone()
    return int(row[0]) if row else 0


# --- billing (tables of the batch layer) ------------------------------------------------

def billing_usage(conn: Conn, project_id: str, start: date, end: date,
                  api_key: str | None) -> list[Row]:
    """Daily exact usage with its reconciliation status, per consumer, for ``[start, end)``."""
    return _fetch(conn, sql.SQL(
        "SELECT u.api_key, u.day, u.total_requests, u.requests_by_tier, u.error_count, "
        "u.server_error_count, u.bytes_in, u.bytes_out, u.computed_at, "
        "r.status AS reconciliation_status, r.stream_count, r.difference, "
        "r.late_beyond_lateness, r.duplicates_removed, r.duplicates_in_stream, r.unexplained "
        "FROM billing_usage u LEFT JOIN reconciliation r "
        "ON r.project_id = u.project_id AND r.api_key = u.api_key AND r.day = u.day "
        "WHERE u.project_id = %s AND u.day >= %s AND u.day < %s "
        "AND (%s::text IS NULL OR u.api_key = %s) ORDER BY u.api_key, u.day"),
        (project_id, start, end, api_key, api_key))


# --- quotas (our table, migration 0040) ---------------------------------------------------

_QUOTA_COLS: Final = "api_key, monthly_requests, requests_per_minute, updated_at"


def get_quota(conn: Conn, project_id: str, api_key: str) -> Row | None:
    rows = _fetch(conn, sql.SQL(
        f"SELECT {_QUOTA_COLS} FROM quotas WHERE project_id = %s AND api_key = %s"),  # noqa: S608
        (project_id, api_key))
    return rows[0] if rows else None


def list_quotas(conn: Conn, project_id: str) -> list[Row]:
    return _fetch(conn, sql.SQL(
        f"SELECT {_QUOTA_COLS} FROM quotas WHERE project_id = %s ORDER BY api_key"),  # noqa: S608
        (project_id,))


def put_quota(conn: Conn, project_id: str, api_key: str, monthly_requests: int | None,
              requests_per_minute: int | None) -> Row:
    return _fetch(conn, sql.SQL(
        "INSERT INTO quotas (project_id, api_key, monthly_requests, requests_per_minute) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (project_id, api_key) DO UPDATE SET "
        "monthly_requests = EXCLUDED.monthly_requests, "
        "requests_per_minute = EXCLUDED.requests_per_minute, updated_at = now() "
        "RETURNING api_key, monthly_requests, requests_per_minute, updated_at"),
        (project_id, api_key, monthly_requests, requests_per_minute))[0]


def delete_quota(conn: Conn, project_id: str, api_key: str) -> bool:
    cur = conn.execute("DELETE FROM quotas WHERE project_id = %s AND api_key = %s",
                       (project_id, api_key))
    return cur.rowcount == 1
