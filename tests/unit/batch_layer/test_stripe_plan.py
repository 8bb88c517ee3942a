from datetime import date

import pytest

from batch_layer.repository import BilledDay
from batch_layer.settings import BatchSettings
from batch_layer.stripe_export import event_identifier, month_range, plan_events

ROW = BilledDay("acme", "key-1", date(2026, 11, 3), "cus_1", 120, {"premium": 20, "default": 100},
                4, 1, 10, 20)
METERS = {"api_requests": "total_requests", "premium_requests": "tier:premium"}


def test_month_range_handles_december():
    assert month_range("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    with pytest.raises(ValueError):
        month_range("2026-13")


def test_first_export_sends_every_meter_with_deterministic_identifiers():
    events, decreases = plan_events([ROW], METERS, {})
    assert [(e.event_name, e.value, e.revision) for e in events] == [
        ("api_requests", 120, 1), ("premium_requests", 20, 1)]
    assert events[0].identifier == event_identifier(("acme", "key-1", ROW.day, "api_requests"), 1)
    assert plan_events([ROW], METERS, {})[0] == events
    assert events[0].timestamp == 1793664000  # 2026-11-03T00:00:00Z
    assert decreases == 0


def test_rerun_sends_nothing_again_and_only_growth_as_a_new_revision():
    done = {("acme", "key-1", ROW.day, "api_requests"): (1, 120),
            ("acme", "key-1", ROW.day, "premium_requests"): (1, 25)}
    events, decreases = plan_events([ROW], METERS, done)
    assert events == [] and decreases == 1
    done[("acme", "key-1", ROW.day, "api_requests")] = (1, 100)
    [event], _ = plan_events([ROW], METERS, done)
    assert (event.value, event.revision) == (20, 2)


def test_unknown_meter_source_is_refused():
    with pytest.raises(ValueError, match="unknown source"):
        BatchSettings(stripe_meters={"x": "latency"})
