"""Stream versus batch, per (project, api_key, day): the difference and its known causes.

The stream (metrics_1m) misses events later than the allowed lateness (it counts them in
late_events instead) and counts duplicate copies that arrived in a different batch (it only
drops retried batches with the same batch id). So, with both counts exact,
``batch - stream = late_beyond_lateness - duplicates_in_stream``; anything else is
unexplained and flagged. Billing always uses the batch figure.

That equation only holds once the day is closed: until the last retry of its last batch
could have arrived (``schemas.retries``) and the lake writer committed it (its roll
interval), the lake lags the stream. A difference on a day still open is ``pending``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal

from batch_layer.billing import UsageRow
from schemas.retries import RETRY_DEDUPE_HORIZON_S

Status = Literal["ok", "explained", "unexplained", "pending"]
Key = tuple[str, str]
_SETTLE_SLACK_S: Final = 60.0  # the lake writer's commit after its roll, clock skew


def settles_at(day: date, lake_roll_s: float) -> datetime:
    """When ``day``'s counts are final on both sides: events, retries and lake commits in."""
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
    return end + timedelta(seconds=RETRY_DEDUPE_HORIZON_S + lake_roll_s + _SETTLE_SLACK_S)


@dataclass(frozen=True)
class ReconciliationRow:
    """One ``reconciliation`` table row."""

    project_id: str
    api_key: str
    day: date
    batch_count: int
    stream_count: int
    difference: int
    late_beyond_lateness: int
    duplicates_removed: int
    duplicates_in_stream: int
    unexplained: int
    status: Status


def reconcile(day: date, usage: Iterable[UsageRow], stream: Mapping[Key, int],
              late: Mapping[Key, int], *, open_day: bool = False) -> list[ReconciliationRow]:
    """A row for every key seen by either side, sorted by key.

    ``open_day``: the day still receives events (see ``settles_at``), so a difference the
    known causes do not explain is ``pending``, not ``unexplained``.
    """
    by_key = {(u.project_id, u.api_key): u for u in usage}
    rows = []
    for key in sorted(set(by_key) | set(stream) | set(late)):
        u = by_key.get(key)
        batch = u.total_requests if u else 0
        stream_count = stream.get(key, 0)
        late_count = late.get(key, 0)
        in_stream = u.duplicates_in_stream if u else 0
        difference = batch - stream_count
        unexplained = difference - late_count + in_stream
        status: Status
        if difference == 0 and unexplained == 0:
            status = "ok"
        elif unexplained == 0:
            status = "explained"
        elif open_day:
            status = "pending"
        else:
            status = "unexplained"
        rows.append(ReconciliationRow(
            project_id=key[0], api_key=key[1], day=day, batch_count=batch,
            stream_count=stream_count, difference=difference,
            late_beyond_lateness=late_count,
            duplicates_removed=u.duplicates_removed if u else 0,
            duplicates_in_stream=in_stream, unexplained=unexplained, status=status,
        ))
    return rows
