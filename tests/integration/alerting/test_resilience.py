"""One bad rule never stops the others; a PostgreSQL outage never stops the service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

import alerting.service as service
from alerting.service import run_round
from tests.integration.alerting.receiver import SLACK_PATH, WEBHOOK_PATH
from tests.integration.alerting.test_alerting import rule, tenant
from tests.integration.query_api.fixtures import Metric, insert_metrics
from turnstile_cli.stack import free_ports

pytestmark = pytest.mark.integration


def test_a_rule_that_cannot_be_evaluated_or_sent_is_set_aside_and_the_others_go_on(
        db, receiver, settings, api, monkeypatch):
    a = tenant(db, "alert-poison")
    now = datetime.now(UTC).replace(second=20, microsecond=0)
    insert_metrics(db, "metrics_1m", [
        Metric(now.replace(second=0), a.pid, "c1", "/orders", "POST", 5, [900.0] * 30,
               errors=30, server_errors=30)])
    ids = []
    for name, channel, target in (
            ("broken", "webhook", receiver.url + WEBHOOK_PATH),
            ("unsendable", "webhook", receiver.url + WEBHOOK_PATH),
            ("fine", "slack", receiver.url + SLACK_PATH)):
        created = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
            name=name, channel=channel, target=target))
        assert created.status_code == 201, created.text
        ids.append(created.json()["rule_id"])
    broken, unsendable, fine = ids
    # Written past the API (which would refuse it): a port httpx cannot even parse.
    db.execute("UPDATE alert_rules SET target = %s WHERE rule_id = %s",
               (receiver.url + ":99999/hook", unsendable))
    real_decide = service.decide

    def decide(r, window, state, at):  # a bug that only this rule's data triggers
        if r.rule_id == broken:
            raise ValueError("cannot compare this rule's window")
        return real_decide(r, window, state, at)

    monkeypatch.setattr(service, "decide", decide)
    stats = run_round(settings, now=now)
    assert (stats.rules, stats.events, stats.delivered, stats.failed, stats.dead_letters) == (
        3, 2, 1, 1, 2)
    (message,) = receiver.to(SLACK_PATH)
    assert message["text"].startswith("[FIRING] fine")
    rows = db.execute("SELECT event_id, reason FROM dead_letters WHERE component = 'alerting'"
                      " AND project_id = %s ORDER BY event_id", (a.pid,)).fetchall()
    day = now.date().isoformat()
    assert [r[0] for r in rows] == [f"rule {broken} unevaluable {day}",
                                    f"rule {unsendable} undeliverable {day}"]
    assert "ValueError: cannot compare" in rows[0][1] and "InvalidURL" in rows[1][1]
    (delivery,) = db.execute("SELECT delivery FROM alert_events WHERE rule_id = %s",
                             (unsendable,)).fetchone()
    assert delivery == "failed"  # never retried forever
    again = run_round(settings, now=now)  # the broken rule is still set aside, once a day
    assert again.dead_letters == 1
    assert len(db.execute("SELECT 1 FROM dead_letters WHERE component = 'alerting'"
                          " AND project_id = %s", (a.pid,)).fetchall()) == 2


def test_alerting_serves_ops_and_waits_out_a_postgres_outage(stack, tmp_path):
    assert stack.postgres is not None, "this test stops the session's own PostgreSQL"
    (port,) = free_ports(1)
    log_path = tmp_path / "alerting.log"
    env = {**os.environ, "TURNSTILE_DATABASE_URL": stack.database_url,
           "TURNSTILE_ALERTING_INTERVAL_S": "1", "TURNSTILE_ALERTING_OPS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "turnstile_cli.main", "alerting"], env=env,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)

    def status() -> int:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=3).status_code
        except httpx.HTTPError:
            return -1

    def until(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.3)

    try:
        until(lambda: status() == 200, 30, "readiness")

        def scrape() -> str:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text

        until(lambda: 'turnstile_consumer_last_success_timestamp_seconds{component="alerting"}'
              in scrape(), 20, "a successful round in /metrics")
        assert 'turnstile_consumer_events_in_total{component="alerting"}' in scrape()
        stack.postgres.stop()
        try:
            until(lambda: "alerting round failed: PostgreSQL unreachable at" in
                  log_path.read_text(), 30, "the outage to be logged")
            until(lambda: status() == 503, 20, "readiness to turn false")
            assert proc.poll() is None, "alerting exited during the outage"
        finally:
            stack.postgres.start()
        until(lambda: status() == 200, 60, "readiness after the outage")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    lines = [line for line in log_path.read_text().splitlines() if "round failed" in line]
    assert lines and all("; retrying in " in line for line in lines), lines[:3]
    assert "Traceback" not in log_path.read_text()
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT state FROM pipeline_heartbeats WHERE component = 'alerting'"
                            " AND instance LIKE %s", (f"%:{proc.pid}",)).fetchone() == (
            "stopped",)
