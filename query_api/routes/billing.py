"""``/api/v1/billing/usage``: exact monthly usage from the batch layer, with reconciliation."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from query_api import repository as repo
from query_api.deps import ConnDep, NowDep, ReadKey
from query_api.models import BillingResponse
from query_api.params import month_bounds, parse_period
from query_api.routes.common import CSV_RESPONSES, Format, maybe_csv
from query_api.shaping import iso

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])

# Worst first: a consumer's month is as doubtful as its most doubtful day.
_SEVERITY = ("unexplained", "explained", "pending", "ok")
_SUMMED = ("total_requests", "error_count", "server_error_count", "bytes_in", "bytes_out")
# The reconciliation's causes of a day's stream/batch difference (None before it ran):
# difference = late_beyond_lateness - duplicates_in_stream + unexplained.
CAUSES = ("late_beyond_lateness", "duplicates_removed", "duplicates_in_stream", "unexplained")
CSV_COLUMNS = ("api_key", "day", *_SUMMED, "reconciliation_status", "stream_count",
               "difference", *CAUSES)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Daily rows (ordered by api_key, day) → one entry per consumer with its days."""
    consumers: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = consumers.setdefault(row["api_key"], {
            "api_key": row["api_key"], **dict.fromkeys(_SUMMED, 0),
            "requests_by_tier": Counter(), "statuses": set(), "days": []})
        for name in _SUMMED:
            entry[name] += int(row[name])
        entry["requests_by_tier"].update({k: int(v) for k, v in
                                          (row["requests_by_tier"] or {}).items()})
        status = row["reconciliation_status"] or "pending"
        entry["statuses"].add(status)
        entry["days"].append({
            "day": row["day"].isoformat(), **{n: int(row[n]) for n in _SUMMED},
            "requests_by_tier": {k: int(v) for k, v in (row["requests_by_tier"] or {}).items()},
            "reconciliation_status": row["reconciliation_status"],
            "stream_count": row["stream_count"], "difference": row["difference"],
            **{name: row[name] for name in CAUSES},
            "computed_at": row["computed_at"],
        })
    out = []
    for entry in consumers.values():
        statuses = entry.pop("statuses")
        entry["reconciliation_status"] = next(s for s in _SEVERITY if s in statuses)
        entry["requests_by_tier"] = dict(entry["requests_by_tier"])
        out.append(entry)
    return out


@router.get("/usage", response_model=BillingResponse, responses=CSV_RESPONSES)
def usage(
    request: Request, key: ReadKey, conn: ConnDep, now: NowDep,
    period: Annotated[str | None, Query(description="YYYY-MM; default: this month",
                                        examples=["2026-11"])] = None,
    api_key: Annotated[str | None, Query(description="One consumer; default: all")] = None,
    fmt: Format = None,
) -> dict[str, Any] | Response:
    """Exact usage per consumer for a month (days computed so far) and its reconciliation."""
    start, end = parse_period(period) if period else month_bounds(now)
    rows = repo.billing_usage(conn, key.project_id, start.date(), end.date(), api_key)
    payload = {"project_id": key.project_id, "period": f"{start:%Y-%m}", "start": iso(start),
               "end": iso(end), "consumers": summarise(rows)}
    csv_rows = [{**r, "day": r["day"].isoformat()} for r in rows]
    return maybe_csv(request, fmt, payload, CSV_COLUMNS, csv_rows, f"usage-{start:%Y-%m}")
