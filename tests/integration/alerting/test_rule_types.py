"""Each rule type over real rows (minutes, the hourly continuous aggregate, quotas),
evaluated by real rounds at an injected time: fires on a planted pattern, quiet on normal
data, fan-out names the breaching member with its own cooldown and resolve, and one
tenant's rules and events never see another's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from alerting.service import run_round
from tests.integration.alerting.receiver import WEBHOOK_PATH
from tests.integration.alerting.test_alerting import tenant
from tests.integration.query_api.fixtures import Metric, insert_metrics
from turnstile_cli.main import app as cli

pytestmark = pytest.mark.integration


def _now() -> datetime:
    return datetime.now(UTC).replace(second=30, microsecond=0)


def _hook(receiver, **kw) -> dict:
    return {"name": "r", "channel": "webhook", "target": receiver.url + WEBHOOK_PATH,
            "min_requests": 20, **kw}


def _make(api, who, body) -> dict:
    made = api.post("/api/v1/alerts/rules", headers=who.admin, json=body)
    assert made.status_code == 201, made.text
    return made.json()


def _ok(minute, pid, endpoint="/a", n=100, latency=20.0, key="c1", errors=0) -> list[Metric]:
    rows = [Metric(minute, pid, key, endpoint, "GET", 2, [latency] * (n - errors))]
    if errors:
        rows.append(Metric(minute, pid, key, endpoint, "GET", 5, [latency] * errors,
                           errors=errors, server_errors=errors))
    return rows


def test_fan_out_over_endpoints_names_the_member_and_keeps_cooldown_and_resolve_per_member(
        db, receiver, settings, api):
    a, b = tenant(db, "fan-a"), tenant(db, "fan-b")
    now = _now()
    minute = now.replace(second=0)
    insert_metrics(db, "metrics_1m", [*_ok(minute, a.pid, "/a", errors=40),
                                      *_ok(minute, a.pid, "/b"),
                                      *_ok(minute, b.pid, "/c", errors=90)])
    made = _make(api, a, _hook(receiver, name="errors per endpoint", scope="each_endpoint",
                               metric="error_rate", comparator=">", threshold=0.2,
                               cooldown_minutes=15))
    stats = run_round(settings, now=now)
    assert (stats.events, stats.delivered, stats.members) == (1, 1, 2)
    (hook,) = receiver.to(WEBHOOK_PATH)
    assert hook["member"] == "/a" and hook["scope"] == "each_endpoint"
    assert hook["summary"].startswith("[FIRING] errors per endpoint [endpoint /a]: error_rate 0.4")
    listed = api.get("/api/v1/alerts/rules", headers=a.admin).json()
    assert listed[0]["firing"] is True and listed[0]["firing_members"] == ["/a"]

    # /b breaks a minute later: its own firing; /a, still firing, is not paged again.
    insert_metrics(db, "metrics_1m", _ok(minute + timedelta(minutes=1), a.pid, "/b",
                                         n=300, errors=200))
    stats = run_round(settings, now=now + timedelta(minutes=1))
    assert stats.events == 1 and receiver.to(WEBHOOK_PATH)[-1]["member"] == "/b"

    # Both bad minutes leave the window: each member resolves on its own.
    stats = run_round(settings, now=now + timedelta(minutes=7))
    assert (stats.events, stats.delivered) == (2, 2)
    resolved = {h["member"]: h["kind"] for h in receiver.to(WEBHOOK_PATH)[-2:]}
    assert resolved == {"/a": "resolved", "/b": "resolved"}
    # /a breaks again inside its cooldown: recorded, not sent.
    insert_metrics(db, "metrics_1m", _ok(minute + timedelta(minutes=8), a.pid, "/a",
                                         errors=50))
    stats = run_round(settings, now=now + timedelta(minutes=8))
    assert (stats.events, stats.delivered) == (1, 0)
    events = api.get("/api/v1/alerts/events", headers=a.read).json()
    assert [(e["member"], e["kind"], e["delivery"]) for e in events][0] == (
        "/a", "firing", "suppressed")
    assert {e["rule_id"] for e in events} == {made["rule_id"]}
    firing = api.get("/api/v1/alerts/firing", headers=a.read).json()
    assert [(f["member"], f["rule_name"]) for f in firing] == [("/a", "errors per endpoint")]
    # B's failing endpoint is in no rule of A's, and B sees none of A's events.
    assert all(h["project_id"] == a.pid for h in receiver.to(WEBHOOK_PATH))
    assert api.get("/api/v1/alerts/events", headers=b.read).json() == []
    assert api.get("/api/v1/alerts/firing", headers=b.read).json() == []


def test_a_dynamic_rule_fires_k_deviations_from_its_hourly_baseline_and_not_within_them(
        db, receiver, settings, api):
    spiky, calm = tenant(db, "dyn-spike"), tenant(db, "dyn-calm")
    now = _now()
    hour = now.replace(minute=0, second=0)
    history = []
    for h in range(1, 24 * 7 + 1):  # one minute row per past hour: the hour's traffic
        errors = 1 + h % 3  # 1-3 % errors, hour by hour
        for t in (spiky, calm):
            history += _ok(hour - timedelta(hours=h), t.pid, "/a", errors=errors)
    insert_metrics(db, "metrics_1m", history)
    db.execute("CALL refresh_continuous_aggregate('metrics_1h', %s, %s)",
               (hour - timedelta(days=8), hour))
    minute = now.replace(second=0)
    insert_metrics(db, "metrics_1m", [*_ok(minute, spiky.pid, errors=15),
                                      *_ok(minute, calm.pid, errors=3)])
    for t in (spiky, calm):
        _make(api, t, _hook(receiver, name="unusual errors", rule_type="dynamic",
                            metric="error_rate"))
    stats = run_round(settings, now=now)
    assert (stats.rules, stats.events) == (2, 1)
    (hook,) = receiver.to(WEBHOOK_PATH)
    assert hook["project_id"] == spiky.pid and hook["rule_type"] == "dynamic"
    detail = hook["detail"]
    assert detail["baseline_hours"] == 168 and detail["mean"] == pytest.approx(0.02, abs=1e-3)
    assert detail["current"] == pytest.approx(0.15) and hook["value"] > 2
    assert "7-day hourly mean 0.02" in hook["condition"]


def test_rate_of_change_fires_when_p99_jumps_over_the_window_before(
        db, receiver, settings, api):
    jump, steady = tenant(db, "roc-jump"), tenant(db, "roc-steady")
    now = _now()
    minute = now.replace(second=0)
    rows = []
    for t, later in ((jump, 300.0), (steady, 110.0)):
        rows += _ok(minute - timedelta(minutes=7), t.pid, latency=100.0)  # the 5 min before
        rows += _ok(minute - timedelta(minutes=1), t.pid, latency=later)
    insert_metrics(db, "metrics_1m", rows)
    for t in (jump, steady):
        _make(api, t, _hook(receiver, name="p99 jump", rule_type="rate_of_change",
                            metric="latency_p99", threshold=0.5, direction="up"))
    stats = run_round(settings, now=now)
    assert stats.events == 1
    (hook,) = receiver.to(WEBHOOK_PATH)
    assert hook["project_id"] == jump.pid and hook["value"] == pytest.approx(2.0, rel=0.05)
    assert hook["detail"]["previous"] == pytest.approx(100.0, rel=0.05)
    assert hook["summary"].startswith("[FIRING] p99 jump: latency_p99 changed 200 %")


def test_volume_fires_on_an_outage_against_the_same_hour_last_week_and_on_a_spike(
        db, receiver, settings, api):
    down, normal, spike = tenant(db, "vol-down"), tenant(db, "vol-ok"), tenant(db, "vol-up")
    now = _now()
    minute = now.replace(second=0)
    rows = []
    for t, today in ((down, 100), (normal, 950), (spike, 5000)):
        rows += _ok(minute - timedelta(days=7, minutes=10), t.pid, n=1000)
        rows += _ok(minute - timedelta(minutes=10), t.pid, n=today)
    insert_metrics(db, "metrics_1m", rows)
    for t in (down, normal, spike):
        _make(api, t, _hook(receiver, name="outage", rule_type="volume"))
        _make(api, t, _hook(receiver, name="surge", rule_type="volume", direction="up",
                            threshold=3.0))
    stats = run_round(settings, now=now)
    assert stats.events == 2
    fired = sorted((h["project_id"], h["rule_name"], h["value"])
                   for h in receiver.to(WEBHOOK_PATH))
    assert fired == sorted([(down.pid, "outage", pytest.approx(0.1)),
                            (spike.pid, "surge", pytest.approx(5.0))])
    outage = next(h for h in receiver.to(WEBHOOK_PATH) if h["rule_name"] == "outage")
    assert outage["detail"] == {"requests": 100, "week_ago": 1000}
    assert "same 60 min a week ago" in outage["condition"]


def test_quota_rules_fire_per_key_at_80_percent_and_forecast_the_exhaustion(
        db, receiver, settings, api):
    a = tenant(db, "quota")
    now = _now()
    minute = now.replace(second=0)
    insert_metrics(db, "metrics_1m", [*_ok(minute, a.pid, key="near", n=900),
                                      *_ok(minute, a.pid, key="far", n=100),
                                      *_ok(minute, a.pid, key="fast", n=5000)])
    for key, limit in (("near", 1000), ("far", 10_000), ("fast", 6000)):
        assert api.put(f"/api/v1/quotas/{key}", headers=a.admin,
                       json={"monthly_requests": limit}).status_code == 200
    _make(api, a, _hook(receiver, name="quota 80", rule_type="quota", scope="each_api_key"))
    _make(api, a, _hook(receiver, name="runs out", rule_type="quota_forecast",
                        scope="each_api_key", threshold=2))
    stats = run_round(settings, now=now)
    fired = {(h["rule_name"], h["member"]): h for h in receiver.to(WEBHOOK_PATH)}
    assert set(fired) == {("quota 80", "near"), ("quota 80", "fast"), ("runs out", "near"),
                          ("runs out", "fast")}, list(fired)
    assert stats.events == 4
    assert fired[("quota 80", "near")]["value"] == pytest.approx(0.9)
    fast = fired[("runs out", "fast")]
    assert fast["value"] == pytest.approx(0.2)  # 1,000 left at 5,000 an hour
    assert fast["detail"]["exhausts_at"].startswith(
        (now + timedelta(minutes=12)).strftime("%Y-%m-%dT%H:%M"))
    assert "5000 requests/h" in fast["condition"] and "runs out at" in fast["condition"]
    assert fast["summary"].startswith("[FIRING] runs out [consumer fast]: monthly quota "
                                      "exhausted in 0.2 h")


def test_rule_fields_are_checked_per_type_with_a_400_naming_the_field(db, receiver, api):
    a = tenant(db, "checks")
    cases = [({"rule_type": "quota"}, "api_key"),
             ({"rule_type": "volume", "direction": "either"}, "direction"),
             ({"rule_type": "threshold", "metric": "error_rate", "comparator": ">"},
              "threshold"),
             ({"rule_type": "dynamic", "metric": "error_rate", "threshold": -2}, "threshold"),
             ({"rule_type": "rate_of_change", "metric": "latency_p99",
               "scope": "each_endpoint", "endpoint": "/a"}, "endpoint"),
             ({"rule_type": "sometimes"}, "rule_type"),
             ({"rule_type": "dynamic", "metric": "error_rate", "baseline_days": 90},
              "baseline_days")]
    for fields, name in cases:
        answer = api.post("/api/v1/alerts/rules", headers=a.admin,
                          json=_hook(receiver, **fields))
        assert answer.status_code == 400, (fields, answer.text)
        assert [p["name"] for p in answer.json()["invalid_params"]] == [name], answer.json()
    made = _make(api, a, _hook(receiver, rule_type="volume", scope="each_endpoint"))
    assert (made["metric"], made["threshold"], made["direction"], made["window_minutes"]) == (
        "request_count", 0.5, "down", 60)


def test_the_cli_creates_checks_lists_disables_and_deletes_rules_of_every_type(
        stack, db, receiver, monkeypatch):
    a = tenant(db, "cli")
    monkeypatch.setenv("TURNSTILE_DATABASE_URL", stack.database_url)
    monkeypatch.setenv("TURNSTILE_ALERTING_ALLOWED_TARGET_PREFIXES", json.dumps([receiver.url]))
    runner = CliRunner()
    base = ["alerts", "create", "-p", a.pid, "--channel", "webhook",
            "--target", receiver.url + WEBHOOK_PATH]
    made = runner.invoke(cli, [*base, "--name", "outage", "--type", "volume",
                               "--scope", "each_endpoint"])
    assert made.exit_code == 0, made.output
    rule_id = int(made.output.split()[3])
    forecast = runner.invoke(cli, [*base, "--name", "runs out", "--type", "quota_forecast",
                                   "--api-key", "c1", "--threshold", "12"])
    assert forecast.exit_code == 0, forecast.output
    for extra, field in ((["--type", "quota"], "api-key"), (["--type", "weekly"], "type"),
                         (["--metric", "error_rate", "--threshold", "0.1"], "comparator")):
        bad = runner.invoke(cli, [*base, "--name", "bad", *extra])
        assert bad.exit_code == 2 and bad.output.startswith(f"{field}: "), bad.output
    wrong = runner.invoke(cli, ["alerts", "create", "-p", a.pid, "--name", "x", "--channel",
                                "webhook", "--target", "http://10.0.0.1/", "--type", "volume"])
    assert wrong.exit_code == 2 and wrong.output.startswith("target: ")
    listed = json.loads(runner.invoke(cli, ["alerts", "list", "--json", "-p", a.pid]).output)
    assert [(r["rule_type"], r["scope"], r["threshold"]) for r in listed] == [
        ("volume", "each_endpoint", 0.5), ("quota_forecast", "rule", 12.0)]
    table = runner.invoke(cli, ["alerts", "list", "-p", a.pid], env={"COLUMNS": "200"})
    assert "requests down 0.5x of last week over 60 min per endpoint" in table.output
    assert "monthly quota exhausted within 12 h" in table.output
    assert runner.invoke(cli, ["alerts", "disable", str(rule_id)]).exit_code == 0
    assert db.execute("SELECT enabled FROM alert_rules WHERE rule_id = %s",
                      (rule_id,)).fetchone() == (False,)
    assert runner.invoke(cli, ["alerts", "delete", str(rule_id)]).exit_code == 0
    assert runner.invoke(cli, ["alerts", "delete", str(rule_id)]).exit_code == 1
