from datetime import UTC, datetime, timedelta

import pytest

from alerting.assess import assess
from alerting.decide import State
from alerting.decide import decide as decide_state
from alerting.rules import Rule, Window, value_of
from schemas.alerts import AlertTargetPolicy

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def rule(**kw) -> Rule:
    base = dict(rule_id=1, project_id="p", name="errors", metric="error_rate", comparator=">",
                threshold=0.1, window_minutes=5, min_requests=20, cooldown_minutes=15,
                endpoint=None, api_key=None, method=None, channel="slack", target="x")
    return Rule(**{**base, **kw})


def window(requests=100, errors=0, p95=None) -> Window:
    return Window(requests, errors, 0, 10.0 * requests, None, p95, None, T0, T0)


def decide(r, w, state, now):
    """The threshold type's assessment, then the state machine, as a round does them."""
    verdict = assess(r, w, now=now)
    new, event = decide_state(r, verdict, state, now)
    return new, event, verdict.value


def test_a_breach_fires_once_then_resolves_with_a_notification():
    r = rule()
    state, event, value = decide(r, window(errors=30), None, T0)
    assert (event.kind, event.delivery, value) == ("firing", "pending", 0.3)
    assert state.firing and state.last_notified_at == T0
    again, none, _ = decide(r, window(errors=40), state, T0 + timedelta(minutes=1))
    assert none is None and again == state
    ok, resolved, _ = decide(r, window(errors=1), again, T0 + timedelta(minutes=2))
    assert (resolved.kind, resolved.delivery) == ("resolved", "pending")
    assert not ok.firing


def test_too_few_requests_never_breach_a_rate_or_latency_rule():
    _, event, value = decide(rule(), window(requests=5, errors=5), None, T0)
    assert event is None and value == 1.0
    _, event, _ = decide(rule(metric="latency_p95", threshold=100), window(requests=0), None, T0)
    assert event is None


def test_a_traffic_drop_fires_on_an_empty_window():
    r = rule(metric="request_count", comparator="<", threshold=10)
    _, event, value = decide(r, window(requests=0), None, T0)
    assert (event.kind, value) == ("firing", 0.0)


def test_a_flapping_rule_is_recorded_but_not_sent_inside_the_cooldown():
    r = rule(cooldown_minutes=15)
    s1, _, _ = decide(r, window(errors=30), None, T0)
    s2, resolved, _ = decide(r, window(errors=0), s1, T0 + timedelta(minutes=1))
    assert resolved.delivery == "pending"
    s3, refire, _ = decide(r, window(errors=30), s2, T0 + timedelta(minutes=5))
    assert (refire.kind, refire.delivery) == ("firing", "suppressed")
    _, quiet, _ = decide(r, window(errors=0), s3, T0 + timedelta(minutes=6))
    assert (quiet.kind, quiet.delivery) == ("resolved", "suppressed")  # its firing was not sent
    _, later, _ = decide(r, window(errors=30), State(False, T0, T0), T0 + timedelta(minutes=16))
    assert later.delivery == "pending"


@pytest.mark.parametrize(("metric", "expected"), [
    ("request_count", 100.0), ("error_rate", 0.25), ("latency_avg", 10.0), ("latency_p95", 42.0),
])
def test_measures_of_a_window(metric, expected):
    assert value_of(metric, window(errors=25, p95=42.0)) == expected


def test_targets_are_checked_per_channel():
    policy = AlertTargetPolicy()
    assert policy.problem("slack", "https://hooks.slack.com/services/T/B/x") is None
    assert "Slack" in policy.problem("slack", "https://evil.example/")
    assert "URL" in policy.problem("webhook", "http://10.0.0.1/admin")
    assert policy.problem("webhook", "https://ops.example.com/hook") is None
    assert policy.problem("pagerduty", "a" * 32) is None
    assert "routing key" in policy.problem("pagerduty", "https://x")


def test_the_target_policy_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TURNSTILE_ALERTING_ALLOWED_TARGET_PREFIXES", '["https://ops.example/"]')
    policy = AlertTargetPolicy()
    assert policy.problem("webhook", "https://ops.example/hook") is None
    assert policy.problem("webhook", "https://elsewhere.example/hook") is not None
