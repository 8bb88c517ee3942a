from datetime import UTC, date, datetime

from batch_layer.billing import UsageRow
from batch_layer.reconcile import reconcile, settles_at
from schemas.retries import RETRY_DEDUPE_HORIZON_S


def _usage(n):
    fields = {name: 0 for name in UsageRow.__dataclass_fields__}
    fields.update(project_id="p", api_key="k", day=date(2026, 11, 20), total_requests=n,
                  requests_by_tier={})
    return UsageRow(**fields)


def test_a_difference_on_an_open_day_is_pending_and_on_a_closed_day_unexplained():
    day = date(2026, 11, 20)
    stream = {("p", "k"): 10}
    (row,) = reconcile(day, [_usage(7)], stream, {}, open_day=True)
    assert (row.status, row.unexplained) == ("pending", -3)
    (row,) = reconcile(day, [_usage(7)], stream, {})
    assert row.status == "unexplained"
    (row,) = reconcile(day, [_usage(10)], stream, {}, open_day=True)
    assert row.status == "ok"


def test_a_day_settles_after_the_last_retry_and_the_lake_roll():
    at = settles_at(date(2026, 11, 20), 300)
    end = datetime(2026, 11, 21, tzinfo=UTC)
    assert (at - end).total_seconds() >= RETRY_DEDUPE_HORIZON_S + 300
    assert (at - end).total_seconds() < 3600
