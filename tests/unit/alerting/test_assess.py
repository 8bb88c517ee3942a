"""Each rule type's breach on planted numbers, and quiet on normal ones (pure)."""

from datetime import UTC, datetime, timedelta

import pytest

from alerting.assess import Baseline, QuotaUse, assess
from alerting.describe import condition, headline_value
from alerting.rules import Rule, Window
from schemas.alerts import rule_problems, with_type_defaults

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def rule(**kw) -> Rule:
    base = dict(rule_id=1, project_id="p", name="r", metric="error_rate", comparator=">",
                threshold=0.1, window_minutes=5, min_requests=20, cooldown_minutes=15,
                endpoint=None, api_key=None, method=None, channel="slack", target="x")
    return Rule(**{**base, **kw})


def window(requests=100, errors=0, p99=None, start=T0 - timedelta(minutes=5)) -> Window:
    return Window(requests, errors, 0, 10.0 * requests, None, None, p99, start,
                  start + timedelta(minutes=5))


def test_dynamic_fires_past_k_deviations_and_stays_quiet_inside_them():
    r = rule(rule_type="dynamic", threshold=2.0, direction="either")
    base = Baseline(mean=0.02, stddev=0.01, hours=168)
    spike = assess(r, window(errors=10), baseline=base)  # 0.10: 8 sd above
    assert spike.breach and spike.value == pytest.approx(8.0)
    assert spike.detail["mean"] == 0.02 and spike.detail["baseline_days"] == 7
    normal = assess(r, window(errors=3), baseline=base)  # 0.03: 1 sd
    assert not normal.breach and normal.value == pytest.approx(1.0)
    assert not assess(rule(rule_type="dynamic", threshold=2.0, direction="up"),
                      window(errors=0), baseline=Baseline(0.05, 0.01, 50)).breach  # 5 sd below
    assert assess(rule(rule_type="dynamic", threshold=2.0, direction="down"),
                  window(errors=0), baseline=Baseline(0.05, 0.01, 50)).breach


def test_dynamic_needs_a_baseline_with_spread_and_enough_requests():
    r = rule(rule_type="dynamic", threshold=2.0, direction="either")
    assert not assess(r, window(errors=50)).breach  # no baseline at all
    assert not assess(r, window(errors=50), baseline=Baseline(0.01, 0.0, 100)).breach  # flat
    assert not assess(r, window(errors=50), baseline=Baseline(0.01, 0.01, 2)).breach  # 2 hours
    assert not assess(r, window(requests=5, errors=5), baseline=Baseline(0.01, 0.01, 99)).breach


def test_rate_of_change_in_percent_and_absolute_up_and_down():
    r = rule(rule_type="rate_of_change", metric="latency_p99", threshold=0.5, direction="up")
    before = window(p99=200.0, start=T0 - timedelta(minutes=10))
    up = assess(r, window(p99=320.0), before=before)
    assert up.breach and up.value == pytest.approx(0.6)
    assert up.detail == {"current": 320.0, "previous": 200.0, "mode": "percent"}
    assert not assess(r, window(p99=280.0), before=before).breach  # +40 %
    down = rule(rule_type="rate_of_change", metric="latency_p99", threshold=0.5,
                direction="down")
    assert assess(down, window(p99=90.0), before=before).breach  # -55 %
    assert not assess(down, window(p99=320.0), before=before).breach
    absolute = rule(rule_type="rate_of_change", metric="latency_p99", threshold=100.0,
                    direction="either", change_mode="absolute")
    assert assess(absolute, window(p99=50.0), before=before).value == pytest.approx(-150.0)
    assert assess(absolute, window(p99=50.0), before=before).breach
    assert not assess(r, window(p99=900.0)).breach  # no window before: nothing to compare


def test_volume_outage_and_spike_against_the_same_window_last_week():
    outage = rule(rule_type="volume", metric="request_count", threshold=0.5, direction="down",
                  window_minutes=60)
    week = window(requests=1000)
    low = assess(outage, window(requests=300), week_ago=week)
    assert low.breach and low.value == pytest.approx(0.3)
    assert low.detail == {"requests": 300, "week_ago": 1000}
    assert assess(outage, window(requests=0), week_ago=week).breach  # a full outage
    assert not assess(outage, window(requests=900), week_ago=week).breach
    assert not assess(outage, window(requests=0), week_ago=window(requests=5)).breach
    spike = rule(rule_type="volume", metric="request_count", threshold=3.0, direction="up",
                 window_minutes=60)
    assert assess(spike, window(requests=3500), week_ago=week).breach
    assert not assess(spike, window(requests=2000), week_ago=week).breach


def test_quota_share_and_forecast_name_the_numbers():
    month_end = datetime(2026, 2, 1, tzinfo=UTC)
    share = rule(rule_type="quota", metric="request_count", threshold=0.8, api_key="c1")
    assert assess(share, window(), quota=QuotaUse(85_000, 100_000, 0, month_end)).breach
    assert not assess(share, window(), quota=QuotaUse(50_000, 100_000, 0, month_end)).breach
    assert not assess(share, window()).breach  # no quota set: unlimited
    forecast = rule(rule_type="quota_forecast", metric="request_count", threshold=24.0,
                    window_minutes=60, api_key="c1")
    soon = assess(forecast, window(), quota=QuotaUse(90_000, 100_000, 1_000, month_end),
                  now=T0)
    assert soon.breach and soon.value == pytest.approx(10.0)  # 10,000 left at 1,000/h
    assert soon.detail["exhausts_at"] == (T0 + timedelta(hours=10)).isoformat()
    assert "runs out at 2026-01-10 22:00 UTC" in condition(forecast, soon.value, soon.detail)
    assert headline_value(forecast, soon.value) == "monthly quota exhausted in 10 h"
    slow = assess(forecast, window(), quota=QuotaUse(90_000, 100_000, 100, month_end), now=T0)
    assert not slow.breach and slow.value == pytest.approx(100.0)
    late = assess(forecast, window(), quota=QuotaUse(90_000, 100_000, 1_000, T0), now=T0)
    assert not late.breach  # the month resets before it runs out
    idle = assess(forecast, window(), quota=QuotaUse(90_000, 100_000, 0, month_end), now=T0)
    assert not idle.breach and idle.value is None


def test_rule_fields_are_checked_per_type_and_filled_with_its_defaults():
    dynamic = with_type_defaults({"rule_type": "dynamic", "metric": "error_rate",
                                  "scope": "rule"})
    assert (dynamic["threshold"], dynamic["direction"], dynamic["comparator"]) == (
        2.0, "either", ">")
    assert rule_problems(dynamic) == []
    volume = with_type_defaults({"rule_type": "volume", "scope": "each_endpoint"})
    assert (volume["metric"], volume["window_minutes"], volume["threshold"]) == (
        "request_count", 60, 0.5)
    assert rule_problems(with_type_defaults({"rule_type": "threshold", "metric": "error_rate",
                                             "scope": "rule"})) == [
        ("threshold", "required for threshold rules"),
        ("comparator", "required for threshold rules (>, >=, <, <=)")]
    assert [name for name, _ in rule_problems(with_type_defaults(
        {"rule_type": "quota", "scope": "rule"}))] == ["api_key"]
    assert [name for name, _ in rule_problems(with_type_defaults(
        {"rule_type": "volume", "scope": "rule", "direction": "either"}))] == ["direction"]
    assert [name for name, _ in rule_problems(with_type_defaults(
        {"rule_type": "rate_of_change", "metric": "latency_p99", "scope": "each_api_key",
         "api_key": "c1", "threshold": -1}))] == ["threshold", "api_key"]
