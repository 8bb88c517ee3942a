"""``/api/v1/analytics/*``: realtime overview, historical series, breakdowns, drill-down."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from query_api import repository as repo
from query_api.deps import ConnDep, LakeDep, NowDep, ReadKey, SettingsDep
from query_api.lake import from_us
from query_api.models import (
    ConsumersResponse,
    CountriesResponse,
    EndpointsResponse,
    HistoricalResponse,
    RealtimeResponse,
    RequestItem,
    RequestsResponse,
)
from query_api.params import (
    MINUTE,
    Rollup,
    TimeRange,
    align,
    auto_step,
    check_points,
    floor_time,
    parse_granularity,
    parse_range,
    parse_window,
    rollup_for_step,
)
from query_api.routes.common import (
    CSV_RESPONSES,
    End,
    Format,
    LakeFilters,
    RollupFilters,
    Start,
    filters_json,
    maybe_csv,
)
from query_api.shaping import STAT_FIELDS, counts_by, filled_series, iso, labelled, stats

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

Limit = Annotated[int, Query(ge=1, le=1000, description="Rows at most, busiest first.")]
# Lake files modified this long before the range start cannot hold its events (an agent's
# clock would have to run this far ahead of the lake writer's).
LAKE_MTIME_SLACK = timedelta(minutes=15)


def duration_label(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _range_for_lists(start: str | None, end: str | None, now: Any,
                     max_days: int) -> tuple[TimeRange, Rollup]:
    """Breakdowns read the rollup ``auto`` would pick, over the range widened to its buckets."""
    rng = parse_range(start, end, now, max_days=max_days)
    table = rollup_for_step(auto_step(rng)) or Rollup.MINUTE
    return align(rng, table.seconds), table


@router.get("/realtime", response_model=RealtimeResponse, responses=CSV_RESPONSES)
def realtime(
    request: Request, key: ReadKey, conn: ConnDep, lake: LakeDep, now: NowDep,
    window: Annotated[str, Query(description="1m … 60m", examples=["5m"])] = "5m",
    top: Annotated[int, Query(ge=1, le=100)] = 10,
    fmt: Format = None,
) -> dict[str, Any] | Response:
    """The last ``window`` minutes, including the still-open current minute (partial)."""
    span = parse_window(window)
    current = floor_time(now, MINUTE)
    rng = TimeRange(current - span + timedelta(minutes=1), current + timedelta(minutes=1))
    pid, table = key.project_id, Rollup.MINUTE
    totals = stats(repo.totals(conn, table, pid, rng))
    elapsed_min = max((now - rng.start).total_seconds() / 60, 1 / 60)
    totals["requests_per_minute"] = round(totals["requests"] / elapsed_min, 3)
    series = filled_series(repo.series(conn, table, pid, rng, MINUTE), rng, MINUTE)
    codes = lake.breakdown(pid, TimeRange(rng.start, now), ["status_code"], limit=100,
                           modified_after=rng.start - LAKE_MTIME_SLACK)
    payload = {
        "project_id": pid,
        "window": duration_label(int(span.total_seconds())),
        "window_seconds": int(span.total_seconds()),
        "start": iso(rng.start),
        "end": iso(now),
        "partial": True,
        "totals": totals,
        "status_classes": counts_by(
            repo.breakdown(conn, table, pid, rng, ["status_class"], percentiles=False),
            "status_class"),
        "status_codes": counts_by(codes, "status_code"),
        "methods": counts_by(
            repo.breakdown(conn, table, pid, rng, ["method"], percentiles=False), "method"),
        "top_endpoints": labelled(
            repo.breakdown(conn, table, pid, rng, ["method", "endpoint"], limit=top),
            ["method", "endpoint"]),
        "top_consumers": labelled(
            repo.breakdown(conn, table, pid, rng, ["api_key"], limit=top), ["api_key"]),
        "series": series,
    }
    return maybe_csv(request, fmt, payload, ("ts", *STAT_FIELDS), series, "realtime")


@router.get("/historical", response_model=HistoricalResponse, responses=CSV_RESPONSES)
def historical(
    request: Request, key: ReadKey, conn: ConnDep, settings: SettingsDep, now: NowDep,
    filters: RollupFilters, start: Start = None, end: End = None,
    granularity: Annotated[str, Query(description="1m, 1h, 1d, auto, or e.g. 5m, 1w")] = "auto",
    fmt: Format = None,
) -> dict[str, Any] | Response:
    """A time series from the coarsest rollup that serves the granularity (zero-filled)."""
    rng = parse_range(start, end, now, max_days=settings.max_range_days)
    step = parse_granularity(granularity, rng)
    table = rollup_for_step(step) or Rollup.MINUTE
    aligned = align(rng, step)
    check_points(aligned, step, settings.max_points)
    rows = repo.series(conn, table, key.project_id, aligned, step, filters)
    series = filled_series(rows, aligned, step)
    totals = stats(repo.totals(conn, table, key.project_id, aligned, filters))
    payload = {
        "project_id": key.project_id, "start": iso(aligned.start), "end": iso(aligned.end),
        "granularity": duration_label(step), "granularity_seconds": step,
        "source": table.value, "filters": filters_json(filters), "totals": totals,
        "series": series,
    }
    return maybe_csv(request, fmt, payload, ("ts", *STAT_FIELDS), series, "historical")


@router.get("/endpoints", response_model=EndpointsResponse, responses=CSV_RESPONSES)
def endpoints(
    request: Request, key: ReadKey, conn: ConnDep, settings: SettingsDep, now: NowDep,
    filters: RollupFilters, start: Start = None, end: End = None, limit: Limit = 100,
    fmt: Format = None,
) -> dict[str, Any] | Response:
    """Per (method, endpoint): requests, errors, latency percentiles, bytes."""
    rng, table = _range_for_lists(start, end, now, settings.max_range_days)
    dims = ["method", "endpoint"]
    items = labelled(repo.breakdown(conn, table, key.project_id, rng, dims, filters,
                                    limit=limit), dims)
    payload = {"project_id": key.project_id, "start": iso(rng.start), "end": iso(rng.end),
               "source": table.value, "endpoints": items}
    return maybe_csv(request, fmt, payload, (*dims, *STAT_FIELDS), items, "endpoints")


@router.get("/consumers", response_model=ConsumersResponse, responses=CSV_RESPONSES)
def consumers(
    request: Request, key: ReadKey, conn: ConnDep, settings: SettingsDep, now: NowDep,
    filters: RollupFilters, start: Start = None, end: End = None, limit: Limit = 100,
    fmt: Format = None,
) -> dict[str, Any] | Response:
    """Per consumer (api_key): requests, bandwidth (bytes in/out), errors, p95."""
    rng, table = _range_for_lists(start, end, now, settings.max_range_days)
    items = labelled(repo.breakdown(conn, table, key.project_id, rng, ["api_key"], filters,
                                    limit=limit), ["api_key"])
    payload = {"project_id": key.project_id, "start": iso(rng.start), "end": iso(rng.end),
               "source": table.value, "consumers": items}
    return maybe_csv(request, fmt, payload, ("api_key", *STAT_FIELDS), items, "consumers")


@router.get("/countries", response_model=CountriesResponse, responses=CSV_RESPONSES)
def countries(
    request: Request, key: ReadKey, lake: LakeDep, settings: SettingsDep, now: NowDep,
    filters: LakeFilters, start: Start = None, end: End = None, limit: Limit = 250,
    fmt: Format = None,
) -> dict[str, Any] | Response:
    """Per country, from the raw events in the lake (exact percentiles)."""
    rng = parse_range(start, end, now, max_days=settings.max_range_days)
    items = labelled(lake.breakdown(key.project_id, rng, ["country"], filters, limit=limit),
                     ["country"])
    payload = {"project_id": key.project_id, "start": iso(rng.start), "end": iso(rng.end),
               "source": "lake", "countries": items}
    return maybe_csv(request, fmt, payload, ("country", *STAT_FIELDS), items, "countries")


@router.get("/requests", response_model=RequestsResponse, responses=CSV_RESPONSES)
def requests_(
    request: Request, key: ReadKey, lake: LakeDep, settings: SettingsDep, now: NowDep,
    filters: LakeFilters, start: Start = None, end: End = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    min_latency_ms: Annotated[float | None, Query(ge=0)] = None,
    fmt: Format = None,
) -> dict[str, Any] | Response:
    """Individual requests from the lake, newest first, with keyset pagination."""
    rng = parse_range(start, end, now, max_days=settings.max_range_days)
    page = lake.requests(key.project_id, rng, filters, limit=limit, cursor=cursor,
                         min_latency_ms=min_latency_ms)
    for row in page.rows:
        row["timestamp"] = iso(from_us(row["timestamp_us"]))
    payload = {"project_id": key.project_id, "start": iso(rng.start), "end": iso(rng.end),
               "requests": page.rows, "next_cursor": page.next_cursor}
    columns = [c for c in RequestItem.model_fields if c != "tags"]
    return maybe_csv(request, fmt, payload, columns, page.rows, "requests")
