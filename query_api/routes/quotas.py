"""``/api/v1/quotas``: limits per consumer (admin) and their live usage (any read key).

Usage of the month adds the days before today (metrics_1d), today's whole hours before
the current one (metrics_1h) and the current hour's minutes (metrics_1m), so a gateway's
check reads a few dozen rows of one consumer whatever the day of the month.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from query_api import repository as repo
from query_api.deps import AdminKey, ConnDep, NowDep, ReadKey
from query_api.models import QuotaItem, QuotaStatus
from query_api.params import DAY, HOUR, MINUTE, Rollup, floor_time, month_bounds
from query_api.problems import ProblemError
from query_api.shaping import iso

router = APIRouter(prefix="/api/v1/quotas", tags=["quotas"])
ApiKeyPath = Annotated[str, Path(min_length=1, max_length=128, description="The consumer")]


class QuotaRequest(BaseModel):
    monthly_requests: int | None = Field(default=None, ge=0, le=2**63 - 1,
                                         description="null: unlimited")
    requests_per_minute: int | None = Field(default=None, ge=0, le=2**31 - 1,
                                            description="null: unlimited")


def quota_window(limit: int | None, used: int, reset_at: datetime) -> dict[str, Any]:
    remaining = None if limit is None else max(limit - used, 0)
    return {"limit": limit, "used": used, "remaining": remaining, "reset_at": iso(reset_at)}


def month_usage(conn: Any, project_id: str, api_key: str, now: datetime) -> int:
    month_start, _ = month_bounds(now)
    today, hour = floor_time(now, DAY), floor_time(now, HOUR)
    return (repo.requests_between(conn, Rollup.DAY, project_id, api_key, month_start, today)
            + repo.requests_between(conn, Rollup.HOUR, project_id, api_key, today, hour)
            + repo.requests_between(conn, Rollup.MINUTE, project_id, api_key, hour,
                                    hour + timedelta(hours=1)))


@router.get("", response_model=list[QuotaItem])
def list_quotas(key: AdminKey, conn: ConnDep) -> list[dict[str, Any]]:
    return repo.list_quotas(conn, key.project_id)


@router.put("/{api_key}", response_model=QuotaItem)
def put_quota(key: AdminKey, conn: ConnDep, api_key: ApiKeyPath,
              body: QuotaRequest) -> dict[str, Any]:
    """Set (replace) a consumer's limits."""
    return repo.put_quota(conn, key.project_id, api_key, body.monthly_requests,
                          body.requests_per_minute)


@router.delete("/{api_key}", status_code=204)
def delete_quota(key: AdminKey, conn: ConnDep, api_key: ApiKeyPath) -> Response:
    if not repo.delete_quota(conn, key.project_id, api_key):
        raise ProblemError(404, "Not found", f"no quota for {api_key!r}",
                           invalid_params=[("api_key", "no quota set")])
    return Response(status_code=204)


@router.get("/{api_key}", response_model=QuotaStatus)
def quota_status(key: ReadKey, conn: ConnDep, now: NowDep,
                 api_key: ApiKeyPath) -> dict[str, Any]:
    """Limit, usage, remaining and reset time, this month and this minute.

    A consumer without a quota row is unlimited (limits null) and still gets its usage.
    """
    quota = repo.get_quota(conn, key.project_id, api_key) or {}
    minute = floor_time(now, MINUTE)
    _, month_end = month_bounds(now)
    used_month = month_usage(conn, key.project_id, api_key, now)
    used_minute = repo.requests_between(conn, Rollup.MINUTE, key.project_id, api_key, minute,
                                        minute + timedelta(minutes=1))
    monthly = quota_window(quota.get("monthly_requests"), used_month, month_end)
    per_minute = quota_window(quota.get("requests_per_minute"), used_minute,
                              minute + timedelta(minutes=1))
    exceeded = any(w["limit"] is not None and w["used"] >= w["limit"]
                   for w in (monthly, per_minute))
    return {"api_key": api_key, "monthly": monthly, "per_minute": per_minute,
            "exceeded": exceeded}
