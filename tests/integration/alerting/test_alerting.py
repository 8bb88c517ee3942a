"""Rules over real metrics_1m rows, evaluated by real rounds, notifying a local server that
answers like Slack, PagerDuty and a webhook; rules managed through the query API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerting.service import run_round
from schemas import keystore
from schemas.keys import KeyKind
from tests.integration.alerting.receiver import (
    PAGERDUTY_PATH,
    SLACK_PATH,
    WEBHOOK_PATH,
)
from tests.integration.query_api.fixtures import Metric, insert_metrics

pytestmark = pytest.mark.integration
ROUTING_KEY = "R0UT1NGKEY" + "a" * 22  # 32 characters, as PagerDuty issues them


@dataclass
class Tenant:
    pid: str
    read: dict[str, str]
    admin: dict[str, str]


def tenant(db: psycopg.Connection, name: str) -> Tenant:
    pid = f"{name}-{uuid.uuid4().hex[:8]}"
    keystore.create_project(db, pid)
    keys = {k: keystore.create_key(db, pid, k).secret for k in (KeyKind.READ, KeyKind.ADMIN)}
    return Tenant(pid, {"Authorization": f"Bearer {keys[KeyKind.READ]}"},
                  {"Authorization": f"Bearer {keys[KeyKind.ADMIN]}"})


def rule(**kw) -> dict:
    return {"name": "5xx on orders", "metric": "server_error_rate", "comparator": ">",
            "threshold": 0.1, "window_minutes": 5, "min_requests": 20, **kw}


def test_an_error_spike_pages_once_then_resolves_and_other_tenants_stay_quiet(
        db, receiver, settings, api):
    a, b = tenant(db, "alert-a"), tenant(db, "alert-b")
    now = datetime.now(UTC).replace(second=20, microsecond=0)
    minute = now.replace(second=0)
    insert_metrics(db, "metrics_1m", [
        Metric(minute, a.pid, "c1", "/orders", "POST", 5, [900.0] * 30, errors=30,
               server_errors=30),
        Metric(minute, a.pid, "c1", "/orders", "POST", 2, [20.0] * 70),
        Metric(minute - timedelta(minutes=1), b.pid, "c9", "/x", "GET", 2, [5.0] * 100),
        Metric(minute, b.pid, "c9", "/x", "GET", 5, [5.0] * 50, errors=50, server_errors=50),
    ])
    slack = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        channel="slack", target=receiver.url + SLACK_PATH))
    assert slack.status_code == 201, slack.text
    page = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        name="slow orders", metric="latency_p95", threshold=500, endpoint="/orders",
        method="post", channel="pagerduty", target=ROUTING_KEY)).json()
    assert page["method"] == "POST" and page["firing"] is None
    # A's rule about a consumer that only B has never sees B's failing minute.
    api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        name="c9", api_key="c9", threshold=0.0, channel="webhook",
        target=receiver.url + WEBHOOK_PATH))

    stats = run_round(settings, now=now)
    assert (stats.rules, stats.events, stats.delivered, stats.failed) == (3, 2, 2, 0)
    (message,) = receiver.to(SLACK_PATH)
    assert message["text"].startswith("[FIRING] 5xx on orders: server_error_rate 0.3")
    assert a.pid in message["text"]
    (trigger,) = receiver.to(PAGERDUTY_PATH)
    assert trigger["event_action"] == "trigger" and trigger["routing_key"] == ROUTING_KEY
    assert trigger["dedup_key"] == f"turnstile-rule-{page['rule_id']}"
    assert trigger["payload"]["custom_details"]["value"] == pytest.approx(900.0)
    assert receiver.to(WEBHOOK_PATH) == []

    assert run_round(settings, now=now + timedelta(minutes=1)).events == 0  # still firing
    assert len(receiver.requests) == 2
    listed = {r["rule_id"]: r for r in api.get("/api/v1/alerts/rules", headers=a.admin).json()}
    assert listed[page["rule_id"]]["firing"] is True

    # Six minutes on, the bad minute has left every 5-minute window.
    stats = run_round(settings, now=now + timedelta(minutes=6))
    assert (stats.events, stats.delivered) == (2, 2)
    assert receiver.to(SLACK_PATH)[-1]["text"].startswith("[RESOLVED] 5xx on orders")
    assert receiver.to(PAGERDUTY_PATH)[-1] == {
        "routing_key": ROUTING_KEY, "event_action": "resolve",
        "dedup_key": f"turnstile-rule-{page['rule_id']}"}

    events = api.get("/api/v1/alerts/events", headers=a.read).json()
    assert sorted((e["rule_name"], e["kind"], e["delivery"]) for e in events) == [
        ("5xx on orders", "firing", "delivered"), ("5xx on orders", "resolved", "delivered"),
        ("slow orders", "firing", "delivered"), ("slow orders", "resolved", "delivered")]
    assert api.get("/api/v1/alerts/events", headers=b.read).json() == []


def test_rules_are_admin_only_checked_and_invisible_to_other_tenants(db, receiver, api):
    a, b = tenant(db, "alert-a"), tenant(db, "alert-b")
    good = rule(channel="slack", target=receiver.url + SLACK_PATH)
    assert api.post("/api/v1/alerts/rules", headers=a.read, json=good).status_code == 403
    bad = api.post("/api/v1/alerts/rules", headers=a.admin,
                   json={**good, "target": "https://hooks.example.com/x"})
    assert bad.status_code == 400 and bad.json()["invalid_params"][0]["name"] == "target"
    unknown = api.post("/api/v1/alerts/rules", headers=a.admin, json={**good, "metric": "cpu"})
    assert unknown.status_code == 400 and unknown.json()["invalid_params"][0]["name"] == "metric"
    made = api.post("/api/v1/alerts/rules", headers=a.admin, json=good).json()
    path = f"/api/v1/alerts/rules/{made['rule_id']}"
    assert api.get("/api/v1/alerts/rules", headers=b.admin).json() == []
    assert api.put(path, headers=b.admin, json=good).status_code == 404
    assert api.delete(path, headers=b.admin).status_code == 404
    changed = api.put(path, headers=a.admin, json={**good, "threshold": 0.5}).json()
    assert changed["threshold"] == 0.5
    assert api.delete(path, headers=a.admin).status_code == 204
    assert api.get("/api/v1/alerts/rules", headers=a.admin).json() == []


def test_a_failing_receiver_is_retried_and_a_refusing_one_is_given_up(
        db, receiver, settings, api):
    a = tenant(db, "alert-a")
    now = datetime.now(UTC).replace(second=10, microsecond=0)
    insert_metrics(db, "metrics_1m", [Metric(now.replace(second=0), a.pid, "c1", "/x", "GET",
                                             2, [1.0] * 5)])
    drop = rule(name="traffic drop", metric="request_count", comparator="<", threshold=10)
    api.post("/api/v1/alerts/rules", headers=a.admin, json={
        **drop, "channel": "webhook", "target": receiver.url + WEBHOOK_PATH})
    api.post("/api/v1/alerts/rules", headers=a.admin, json={
        **drop, "channel": "slack", "target": receiver.url + "/services/gone"})
    # Written to the table directly, past the API's check: the service refuses it too.
    db.execute("INSERT INTO alert_rules (project_id, name, metric, comparator, threshold,"
               " window_minutes, channel, target) VALUES (%s, 'sneaky', 'request_count', '<',"
               " 10, 5, 'webhook', 'http://169.254.169.254/latest')", (a.pid,))
    receiver.webhook_failures = 2
    stats = run_round(settings, now=now)
    assert (stats.events, stats.delivered, stats.failed) == (3, 1, 2)
    tries = receiver.to(WEBHOOK_PATH)  # two answered 500, the third 204: the same body
    assert len(tries) == 3 and tries[0] == tries[1] == tries[2]
    hook = tries[-1]
    assert hook["kind"] == "firing" and hook["value"] == 5.0 and hook["project_id"] == a.pid
    rows = db.execute("SELECT delivery, attempts, delivery_error FROM alert_events "
                      "WHERE project_id = %s ORDER BY event_id", (a.pid,)).fetchall()
    assert rows[0][:2] == ("delivered", 3)
    assert rows[1][0] == "failed" and rows[1][2].startswith("HTTP 404")
    assert rows[2][:2] == ("failed", 0) and rows[2][2].startswith("target refused")
