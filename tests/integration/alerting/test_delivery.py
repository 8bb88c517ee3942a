"""Delivery guarantees with real ``turnstile alerting`` processes: one evaluator at a time
(the round's advisory lock), and a kill -9 between recording a firing and sending it
neither re-fires nor forgets it. Also test-fire (API and CLI) and the aligned defaults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerting.round_lock import ROUND_LOCK_KEY
from alerting.service import run_round
from query_api.routes.alerts import RuleRequest
from schemas.alerts import DEFAULT_COOLDOWN_MINUTES, DEFAULT_MIN_REQUESTS
from tests.integration.alerting.receiver import PAGERDUTY_PATH, WEBHOOK_PATH
from tests.integration.alerting.test_alerting import ROUTING_KEY, rule, tenant
from tests.integration.query_api.fixtures import Metric, insert_metrics
from turnstile_cli.main import app as cli

pytestmark = pytest.mark.integration
TURNSTILE = Path(sys.executable).parent / "turnstile"


def _spike(db, pid: str) -> None:
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    insert_metrics(db, "metrics_1m", [
        Metric(minute, pid, "c1", "/orders", "POST", 5, [900.0] * 30, errors=30,
               server_errors=30),
        Metric(minute, pid, "c1", "/orders", "POST", 2, [20.0] * 70)])


def _evaluator(stack, receiver, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TURNSTILE_DATABASE_URL": stack.database_url,
           "TURNSTILE_ALERTING_INTERVAL_S": "0.5", "TURNSTILE_ALERTING_TIMEOUT_S": "30",
           "TURNSTILE_ALERTING_OPS_PORT": "0",
           "TURNSTILE_ALERTING_ALLOWED_TARGET_PREFIXES": json.dumps([receiver.url])}
    with log.open("ab") as out:
        return subprocess.Popen([str(TURNSTILE), "alerting"], env=env, stdout=out, stderr=out)


def _wait(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    proc.wait(10)


def test_a_kill_9_between_recording_and_sending_is_sent_once_after_restart_and_a_second_evaluator_never_doubles(  # noqa: E501
        stack, db, receiver, settings, api, tmp_path):
    a = tenant(db, "crash")
    _spike(db, a.pid)
    made = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        endpoint="/orders", channel="webhook", target=receiver.url + WEBHOOK_PATH)).json()
    receiver.hold, receiver.arrived = threading.Event(), threading.Event()
    log = tmp_path / "alerting.log"
    first = _evaluator(stack, receiver, log)
    second = third = None
    try:
        assert receiver.arrived.wait(30), log.read_text()  # first is sending, and blocked
        second = _evaluator(stack, receiver, log)  # a second evaluator, same database
        assert _wait(lambda: "another evaluator holds the round lock" in log.read_text())
        time.sleep(1.5)
        assert len(receiver.to(WEBHOOK_PATH)) == 1  # the second skipped: nothing doubled
        _stop(first, signal.SIGKILL)
        _stop(second)
        rows = db.execute("SELECT event_id, kind, delivery FROM alert_events WHERE rule_id = %s",
                          (made["rule_id"],)).fetchall()
        assert [r[1:] for r in rows] == [("firing", "pending")]  # recorded, not yet sent
        event_id = rows[0][0]

        held, receiver.hold = receiver.hold, None
        held.set()  # the killed sender's request is abandoned, never answered
        third = _evaluator(stack, receiver, log)  # the restart
        assert _wait(lambda: receiver.accepted == [str(event_id)]), log.read_text()
        time.sleep(2.0)  # several more rounds: no re-fire, no resend
        assert receiver.accepted == [str(event_id)]
        assert db.execute("SELECT kind, delivery FROM alert_events WHERE rule_id = %s",
                          (made["rule_id"],)).fetchall() == [("firing", "delivered")]
        bodies = receiver.to(WEBHOOK_PATH)
        assert len(bodies) == 2 and bodies[0] == bodies[1]  # the same event, sent again
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
            receiver.hold = None
        for proc in (first, second, third):
            if proc is not None:
                _stop(proc)


def test_a_round_is_skipped_while_another_session_holds_the_round_lock(
        db, receiver, settings, api):
    a = tenant(db, "locked")
    _spike(db, a.pid)
    api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        endpoint="/orders", channel="webhook", target=receiver.url + WEBHOOK_PATH))
    db.execute("SELECT pg_advisory_lock(%s)", (ROUND_LOCK_KEY,))
    try:
        assert run_round(settings).skipped
    finally:
        db.execute("SELECT pg_advisory_unlock(%s)", (ROUND_LOCK_KEY,))
    assert receiver.requests == []
    stats = run_round(settings)
    assert not stats.skipped and (stats.events, stats.delivered) == (1, 1)


def test_a_firing_of_a_rule_disabled_before_delivery_is_suppressed_and_never_sent(
        db, receiver, settings, api):
    a = tenant(db, "disabled")
    made = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        endpoint="/orders", channel="webhook", target=receiver.url + WEBHOOK_PATH)).json()
    now = datetime.now(UTC)
    db.execute(
        "INSERT INTO alert_events (rule_id, project_id, kind, value, threshold, window_start,"
        " window_end, at, delivery, member, detail) VALUES"
        " (%s, %s, 'firing', 0.3, 0.1, %s, %s, %s, 'pending', '', '{}')",
        (made["rule_id"], a.pid, now, now, now))
    off = api.put(f"/api/v1/alerts/rules/{made['rule_id']}", headers=a.admin,
                  json=rule(endpoint="/orders", channel="webhook",
                            target=receiver.url + WEBHOOK_PATH, enabled=False))
    assert off.status_code == 200, off.text
    run_round(settings)
    assert receiver.requests == []
    assert db.execute("SELECT delivery, delivery_error FROM alert_events WHERE rule_id = %s",
                      (made["rule_id"],)).fetchall() == [
        ("suppressed", "rule disabled before delivery")]
    on = api.put(f"/api/v1/alerts/rules/{made['rule_id']}", headers=a.admin,
                 json=rule(endpoint="/orders", channel="webhook",
                           target=receiver.url + WEBHOOK_PATH))
    assert on.status_code == 200, on.text
    run_round(settings)  # re-enabled: the old notice stays unsent (no spike, nothing new)
    assert receiver.requests == []


def test_test_fire_sends_a_marked_notice_and_leaves_the_rule_untouched(
        stack, db, receiver, settings, api, monkeypatch):
    a = tenant(db, "testfire")
    hook = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        channel="webhook", target=receiver.url + WEBHOOK_PATH)).json()
    page = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        channel="pagerduty", target=ROUTING_KEY)).json()
    monkeypatch.setenv("TURNSTILE_DATABASE_URL", stack.database_url)
    monkeypatch.setenv("TURNSTILE_ALERTING_ALLOWED_TARGET_PREFIXES", json.dumps([receiver.url]))
    monkeypatch.setenv("TURNSTILE_ALERTING_PAGERDUTY_EVENTS_URL", receiver.url + PAGERDUTY_PATH)
    runner = CliRunner()
    receiver.webhook_secret = hook["signing_secret"]  # the look-alike verifies the signature
    try:
        out = runner.invoke(cli, ["alerts", "test-fire", str(hook["rule_id"])])
    finally:
        receiver.webhook_secret = None
    assert out.exit_code == 0 and "delivered via webhook" in out.output, out.output
    (body,) = receiver.to(WEBHOOK_PATH)
    assert body["test"] is True and body["kind"] == "test"
    assert body["summary"].startswith("[TEST] 5xx on orders")
    paged = runner.invoke(cli, ["alerts", "test-fire", str(page["rule_id"])])
    assert paged.exit_code == 0, paged.output
    trigger, resolve = receiver.to(PAGERDUTY_PATH)  # the test incident closes itself
    assert trigger["dedup_key"] == f"turnstile-rule-{page['rule_id']}-test"
    assert trigger["payload"]["severity"] == "info"
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": trigger["dedup_key"]}
    missing = runner.invoke(cli, ["alerts", "test-fire", "999999999"])
    assert missing.exit_code == 1 and "no alert rule" in missing.output
    listed = json.loads(runner.invoke(cli, ["alerts", "list", "--json", "-p", a.pid]).output)
    assert [r["rule_id"] for r in listed] == [hook["rule_id"], page["rule_id"]]
    assert all(r["target"].endswith("…") for r in listed)  # secrets shown by their start
    table = runner.invoke(cli, ["alerts", "list", "-p", a.pid], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "server_error_rate > 0.1 over 5 min" in table.output

    for rid in (hook["rule_id"], page["rule_id"]):  # nothing recorded, no state changed
        assert db.execute("SELECT count(*) FROM alert_events WHERE rule_id = %s",
                          (rid,)).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM alert_state WHERE rule_id = %s",
                          (rid,)).fetchone() == (0,)


def test_the_api_and_the_table_share_the_min_requests_and_cooldown_defaults(db):
    defaults = dict(db.execute(
        "SELECT column_name, column_default FROM information_schema.columns"
        " WHERE table_name = 'alert_rules'"
        " AND column_name IN ('min_requests', 'cooldown_minutes')").fetchall())
    assert defaults == {"min_requests": str(DEFAULT_MIN_REQUESTS),
                        "cooldown_minutes": str(DEFAULT_COOLDOWN_MINUTES)}
    fields = RuleRequest.model_fields
    assert fields["min_requests"].default == DEFAULT_MIN_REQUESTS == 20
    assert fields["cooldown_minutes"].default == DEFAULT_COOLDOWN_MINUTES == 15
