"""``/api/v1/pipeline/*``: is every layer running, and what did they set aside for me.

A user seeing flat charts must be able to tell "no traffic" from "the speed layer is
down": ``/health`` shows each service's heartbeat, ``/dead-letters`` the caller's records
that a layer could not process (``schemas.dead_letters``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from query_api import pipeline_repository as repo
from query_api.deps import ConnDep, NowDep, ReadKey
from query_api.models import DeadLettersResponse, PipelineHealth
from query_api.params import TimeRange, parse_instant
from query_api.pipeline import (
    MAX_INSTANCES,
    STALE_AFTER_S,
    component_health,
    decode_dead_letter_cursor,
    encode_dead_letter_cursor,
)
from query_api.problems import InvalidParameterError
from query_api.shaping import iso
from schemas.ops import HEARTBEAT_INTERVAL_S

router = APIRouter(prefix="/api/v1/pipeline", tags=["pipeline"])
MAX_COUNT_GROUPS = 100
DEFAULT_SPAN = timedelta(hours=24)


@router.get("/health", response_model=PipelineHealth)
def health(_key: ReadKey, conn: ConnDep, now: NowDep) -> dict[str, Any]:
    """Every component's state from its heartbeats: up, down or unknown.

    Down: the beat is older than three heartbeat intervals, or the service stopped.
    Unknown: an expected component that never reported.

    Not tenant-specific, by design: heartbeats describe the shared services (state, lag,
    last successful write) and carry no project data, so any read key sees the same answer.
    """
    components = component_health(repo.heartbeats(conn, MAX_INSTANCES))
    status = "up" if all(c["status"] == "up" for c in components) else "degraded"
    return {"status": status, "checked_at": iso(now), "heartbeat_interval_s":
            HEARTBEAT_INTERVAL_S, "stale_after_s": STALE_AFTER_S, "components": components}


@router.get("/dead-letters", response_model=DeadLettersResponse)
def dead_letters(
    key: ReadKey, conn: ConnDep, now: NowDep,
    since: Annotated[str | None, Query(description="Default: now-24h.",
                                       examples=["now-24h"])] = None,
    until: Annotated[str | None, Query(description="Default: now.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Rows at most, newest first.")
                     ] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")
                      ] = None,
) -> dict[str, Any]:
    """The caller's project's dead letters: counts by component and reason, and the newest rows."""
    end = parse_instant(until, "until", now) if until else now
    rng = TimeRange(parse_instant(since, "since", now) if since else end - DEFAULT_SPAN, end)
    if rng.start >= rng.end:
        raise InvalidParameterError("since", "must be before until")
    after = decode_dead_letter_cursor(cursor) if cursor else None
    total, counts = repo.dead_letter_counts(conn, key.project_id, rng, MAX_COUNT_GROUPS)
    rows = repo.dead_letter_rows(conn, key.project_id, rng, limit + 1, after)
    more, rows = len(rows) > limit, rows[:limit]
    next_cursor = (encode_dead_letter_cursor(rows[-1]["recorded_at"], rows[-1]["dead_letter_id"])
                   if more else None)
    return {"project_id": key.project_id, "since": iso(rng.start), "until": iso(rng.end),
            "total": total, "counts": counts, "dead_letters": rows, "next_cursor": next_cursor}
