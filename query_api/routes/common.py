"""Parameters and helpers shared by the analytics routes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import Response

from query_api.csv import csv_response, wants_csv
from query_api.params import Filters, parse_filters

CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "JSON, or CSV with ?format=csv or Accept: text/csv."},
}


def rollup_filters(
    endpoint: Annotated[list[str] | None, Query(description="Route template, repeatable.")] = None,
    api_key: Annotated[list[str] | None, Query(description="Consumer, repeatable.")] = None,
    method: Annotated[list[str] | None, Query(description="HTTP method, repeatable.")] = None,
    status_class: Annotated[list[str] | None, Query(description="2xx…5xx, repeatable.")] = None,
) -> Filters:
    raw = {"endpoint": endpoint, "api_key": api_key, "method": method,
           "status_class": status_class}
    return parse_filters({k: v for k, v in raw.items() if v})


def lake_filters(
    base: Annotated[Filters, Depends(rollup_filters)],
    status_code: Annotated[list[str] | None, Query(description="e.g. 503, repeatable.")] = None,
    country: Annotated[list[str] | None, Query(description="ISO alpha-2, repeatable.")] = None,
) -> Filters:
    raw = {"status_code": status_code, "country": country}
    return base.merged(parse_filters({k: v for k, v in raw.items() if v}))


RollupFilters = Annotated[Filters, Depends(rollup_filters)]
LakeFilters = Annotated[Filters, Depends(lake_filters)]
Format = Annotated[str | None, Query(alias="format", pattern="^(json|csv)$",
                                     description="json (default) or csv.")]
Start = Annotated[str | None, Query(description="Default: end - 24h.", examples=["now-24h"])]
End = Annotated[str | None, Query(description="Default: now.", examples=["now"])]


def maybe_csv(
    request: Request,
    fmt: str | None,
    payload: dict[str, Any],
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    filename: str,
) -> dict[str, Any] | Response:
    """The CSV rendering of ``rows`` when asked for, else the JSON ``payload``."""
    if wants_csv(request, fmt):
        return csv_response(columns, rows, filename)
    return payload


def filters_json(filters: Filters) -> dict[str, list[str | int]]:
    return {k: list(v) for k, v in sorted(filters.values.items())}
