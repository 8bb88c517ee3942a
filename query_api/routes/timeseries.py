"""``/api/v1/analytics/timeseries/{start}/{end}/``: the APInalytics-compatible query.

Rollups answer whole-minute granularities over their dimensions; anything finer (seconds),
any lake-only field (``status_code``, ``country``, ``function``) and any measure the
rollups do not keep (minimum request size, percentiles of bytes) comes from the lake.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from query_api import repository as repo
from query_api.deps import ConnDep, LakeDep, NowDep, ReadKey, SettingsDep
from query_api.measures import (
    AggKind,
    check_pair,
    parse_aggregation,
    parse_value,
    rollup_can_serve,
)
from query_api.models import TimeseriesResponse
from query_api.params import (
    MINUTE,
    ROLLUP_DIMENSIONS,
    TimeRange,
    align,
    canonical_dimension,
    check_points,
    parse_includes,
    parse_instant,
    parse_timeseries_granularity,
    rollup_for_step,
)
from query_api.problems import InvalidParameterError
from query_api.routes.common import CSV_RESPONSES, Format, maybe_csv
from query_api.shaping import iso, value_groups

router = APIRouter(prefix="/api/v1/analytics", tags=["timeseries"])


def parse_groups(texts: list[str] | None) -> list[str]:
    """Repeatable and comma-separated: ``group=api_key&group=method`` or ``group=a,b``."""
    out: list[str] = []
    for text in texts or []:
        for part in text.split(","):
            if part.strip():
                dim = canonical_dimension(part, "group")
                if dim not in out:
                    out.append(dim)
    if len(out) > 3:
        raise InvalidParameterError("group", "at most 3 fields")
    return out


@router.get("/timeseries/{start}/{end}/", response_model=TimeseriesResponse,
            responses=CSV_RESPONSES)
def timeseries(
    request: Request, key: ReadKey, conn: ConnDep, lake: LakeDep, settings: SettingsDep,
    now: NowDep,
    start: Annotated[str, Path(description="RFC 3339, date, Unix seconds or now-24h",
                               examples=["now-24h"])],
    end: Annotated[str, Path(description="RFC 3339, date, Unix seconds or now",
                             examples=["now"])],
    value: Annotated[str, Query(description="requests (count), errors, server_errors, "
                                "latency_ms (response_time), request_bytes, response_bytes")
                     ] = "requests",
    granularity: Annotated[str, Query(description="seconds, or second/minute/hour/day/week")
                           ] = "hour",
    aggregation: Annotated[str, Query(description="count, sum, mean, min, max, percentile_X")
                           ] = "count",
    group: Annotated[list[str] | None, Query(
        description="api_key (consumer_id), method, endpoint (url, function), status_code, "
                    "status_class, country")] = None,
    include: Annotated[list[str] | None, Query(description="field:value, repeatable")] = None,
    max_groups: Annotated[int, Query(ge=1, le=500)] = 50,
    fmt: Format = None,
) -> dict[str, Any] | Response:
    """Series of ``aggregation`` of ``value`` per ``granularity``, optionally grouped."""
    rng = TimeRange(parse_instant(start, "start", now), parse_instant(end, "end", now))
    if rng.start >= rng.end:
        raise InvalidParameterError("start", "must be before end")
    if rng.seconds > settings.max_range_days * 86400:
        raise InvalidParameterError("start", f"range longer than {settings.max_range_days} days")
    step = parse_timeseries_granularity(granularity)
    measure, agg = parse_value(value), parse_aggregation(aggregation)
    check_pair(measure, agg)
    dims = parse_groups(group)
    filters = parse_includes(include or [])
    aligned = align(rng, step)
    check_points(aligned, step, settings.max_points)
    table = rollup_for_step(step)
    from_rollup = (table is not None and step % MINUTE == 0
                   and all(d in ROLLUP_DIMENSIONS for d in (*dims, *filters.dimensions()))
                   and rollup_can_serve(measure, agg))
    if from_rollup and table is not None:
        rows = repo.grouped_series(conn, table, key.project_id, aligned, step, measure, agg,
                                   dims, filters, max_groups=max_groups)
        source = table.value
    else:
        rows = lake.grouped_series(key.project_id, aligned, step, measure, agg, dims, filters,
                                   max_groups=max_groups)
        source = "lake"
    fill = agg.kind in (AggKind.COUNT, AggKind.SUM)
    groups = value_groups(rows, dims, aligned, step, fill_zero=fill)
    payload = {"groups": groups, "start": iso(aligned.start), "end": iso(aligned.end),
               "granularity": step, "value": measure.value, "aggregation": str(agg),
               "source": source}
    csv_rows = [{"group": g, "ts": ts, "value": v} for g, pts in groups.items() for ts, v in pts]
    return maybe_csv(request, fmt, payload, ("group", "ts", "value"), csv_rows, "timeseries")
