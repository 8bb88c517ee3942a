from datetime import UTC, date, datetime, timedelta

import pytest

from batch_layer.repository import BilledDay
from batch_layer.settings import BatchSettings
from batch_layer.stripe_export import key_states, month_range
from batch_layer.stripe_plan import KeyState, LoggedEvent, event_identifier, plan_key
from batch_layer.stripe_repository import LogEntry

DAY = date(2026, 11, 3)
ROW = BilledDay("acme", "key-1", DAY, "cus_1", 120, {"premium": 20, "default": 100},
                4, 1, 10, 20)
METERS = {"api_requests": "total_requests", "premium_requests": "tier:premium"}
KEY = ("acme", "key-1", DAY, "api_requests")
NOW = datetime(2026, 11, 4, 3, tzinfo=UTC)


def logged(revision, value, hours_ago, channel="v1"):
    return LoggedEvent(f"id{revision}", revision, value, NOW - timedelta(hours=hours_ago),
                       channel)


def state(exact, *live, **kw):
    last = max((e.revision for e in live), default=0)
    return KeyState(KEY, "cus_1", exact, tuple(live), kw.pop("last_revision", last), **kw)


def test_month_range_handles_december():
    assert month_range("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    with pytest.raises(ValueError):
        month_range("2026-13")


def test_first_export_sends_every_meter_with_deterministic_identifiers():
    states = key_states([ROW], METERS, {}, {})
    plans = [plan_key(s, NOW) for s in states]
    sends = [p.send for p in plans if p and p.send]
    assert [(e.event_name, e.value, e.revision) for e in sends] == [
        ("api_requests", 120, 1), ("premium_requests", 20, 1)]
    assert sends[0].identifier == event_identifier(KEY, 1)
    assert sends[0].timestamp == 1793664000  # 2026-11-03T00:00:00Z


def test_unchanged_sends_nothing_and_growth_sends_the_difference_as_a_new_revision():
    assert plan_key(state(120, logged(1, 120, 30)), NOW) is None
    plan = plan_key(state(150, logged(1, 120, 30)), NOW)
    assert plan is not None and plan.send is not None and not plan.cancel
    assert (plan.send.value, plan.send.revision) == (30, 2)
    assert plan.send.identifier == event_identifier(KEY, 2)


def test_shrink_inside_the_window_cancels_and_resends_the_right_value():
    plan = plan_key(state(90, logged(1, 100, 2)), NOW)
    assert plan is not None and [e.identifier for e in plan.cancel] == ["id1"]
    assert plan.send is not None and (plan.send.value, plan.send.revision) == (90, 2)
    assert plan.credit_delta == 0


def test_shrink_cancels_only_the_newest_events_it_needs():
    # rev 1 is old, rev 2 recent: cancelling rev 2 (30) covers an excess of 20
    plan = plan_key(state(110, logged(1, 100, 30), logged(2, 30, 1)), NOW)
    assert plan is not None and [e.identifier for e in plan.cancel] == ["id2"]
    assert plan.send is not None and plan.send.value == 10


def test_shrink_past_the_window_is_flagged_as_a_credit_never_resent():
    plan = plan_key(state(90, logged(1, 100, 25)), NOW)
    assert plan is not None and plan.cancel == () and plan.send is None
    assert plan.credit_delta == 10
    # the window's margin: 23h55m is treated as past it
    assert plan_key(state(90, logged(1, 100, 23.92)), NOW).credit_delta == 10


def test_a_refused_cancel_falls_back_to_a_credit():
    plan = plan_key(state(90, logged(1, 100, 2)), NOW, uncancellable={"id1"})
    assert plan is not None and plan.credit_delta == 10 and plan.send is None


def test_rows_rebuilt_from_summaries_are_never_cancelled():
    plan = plan_key(state(90, logged(1, 100, 1, channel="summary")), NOW)
    assert plan is not None and plan.cancel == () and plan.credit_delta == 10


def test_credits_count_as_billed_and_growth_withdraws_an_open_credit_first():
    assert plan_key(state(90, logged(1, 100, 30), open_credit=10), NOW) is None
    plan = plan_key(state(95, logged(1, 100, 30), open_credit=10), NOW)
    assert plan is not None and plan.credit_delta == -5 and plan.send is None
    plan = plan_key(state(130, logged(1, 100, 30), open_credit=10), NOW)
    assert plan is not None and plan.credit_delta == -10 and plan.send.value == 30
    # an issued credit is final: growth is billed anew
    plan = plan_key(state(100, logged(1, 100, 30), credited=10), NOW)
    assert plan is not None and plan.credit_delta == 0 and plan.send.value == 10


def test_a_key_dropped_by_a_rebilled_day_is_owed_zero_and_an_unbilled_day_is_left_alone():
    other = BilledDay("acme", "key-2", DAY, "cus_2", 5, {}, 0, 0, 0, 0)
    logs = {KEY: LogEntry([logged(1, 100, 1)], 1, "cus_1", True),
            ("acme", "key-1", DAY + timedelta(days=1), "api_requests"):
                LogEntry([logged(1, 7, 1)], 1, "cus_1", True)}
    states = {s.key: s for s in key_states([other], {"api_requests": "total_requests"},
                                           logs, {})}
    assert states[KEY].exact == 0 and states[KEY].stripe_customer_id == "cus_1"
    assert ("acme", "key-1", DAY + timedelta(days=1), "api_requests") not in states


def test_unmapped_consumers_are_not_planned():
    row = BilledDay("acme", "key-9", DAY, "", 5, {}, 0, 0, 0, 0)
    assert key_states([row], METERS, {}, {}) == []


def test_unknown_meter_source_is_refused():
    with pytest.raises(ValueError, match="unknown source"):
        BatchSettings(stripe_meters={"x": "latency"})
