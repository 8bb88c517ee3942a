"""Email over a real local SMTP server (plain, STARTTLS, implicit TLS, AUTH) and signed
webhooks checked by the look-alike receiver, through real evaluation rounds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from alerting.notify import Notifier, send_test_notice
from alerting.rules import Rule
from alerting.service import run_round
from alerting.webhook_signing import SIGNATURE_HEADER, sign
from tests.integration.alerting.receiver import WEBHOOK_PATH
from tests.integration.alerting.smtp_server import PASSWORD, USER, self_signed, smtp_server
from tests.integration.alerting.test_alerting import rule, tenant
from tests.integration.query_api.fixtures import Metric, insert_metrics

pytestmark = pytest.mark.integration
TO = ["oncall@example.com", "sre-lead@example.org"]


def email_rule(**kw) -> Rule:
    fields = {"rule_id": 7, "project_id": "shop", "name": "5xx on orders",
              "metric": "server_error_rate", "comparator": ">", "threshold": 0.1,
              "window_minutes": 5, "min_requests": 20, "cooldown_minutes": 15,
              "endpoint": "/orders", "api_key": None, "method": "POST", "channel": "email",
              "target": ", ".join(TO), **kw}
    return Rule(**fields)


def test_a_firing_email_carries_the_numbers_the_rule_and_a_link_in_text_and_html(
        db, settings, api):
    a = tenant(db, "mail")
    now = datetime.now(UTC).replace(second=20, microsecond=0)
    insert_metrics(db, "metrics_1m", [
        Metric(now.replace(second=0), a.pid, "c1", "/orders", "POST", 5, [900.0] * 30,
               errors=30, server_errors=30),
        Metric(now.replace(second=0), a.pid, "c1", "/orders", "POST", 2, [20.0] * 70)])
    made = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        endpoint="/orders", channel="email", target=" , ".join(TO)))
    assert made.status_code == 201, made.text
    bad = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        channel="email", target="oncall@example.com, nobody"))
    assert bad.status_code == 400 and bad.json()["invalid_params"][0]["name"] == "target"
    with smtp_server() as (inbox, port):
        mailing = settings.model_copy(update={
            "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "plain",
            "smtp_from": "turnstile@alerts.example", "dashboard_base_url": "https://ts.example/"})
        stats = run_round(mailing, now=now)
    assert (stats.events, stats.delivered, stats.failed) == (1, 1, 0)
    (got,) = inbox.messages
    assert got.mail_from == "turnstile@alerts.example" and got.rcpt_tos == TO
    msg = got.message
    assert msg["Subject"] == "[FIRING] 5xx on orders: server_error_rate 0.3"
    assert msg["To"] == ", ".join(TO) and msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Turnstile-Rule-Id"] == str(made.json()["rule_id"])
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    start = (now.replace(second=0) + timedelta(minutes=1) - timedelta(minutes=5))
    for body in (text, html):
        assert "0.3" in body and "&gt; 0.1" in body.replace("> 0.1", "&gt; 0.1")
        assert f"5 min, {start:%Y-%m-%d %H:%M}" in body
        assert f"project {a.pid}" in body and "endpoint /orders" in body
        assert "5xx on orders" in body and "https://ts.example/#range=custom" in body
    assert "endpoint=%2Forders" in html and "TEST" not in text


def test_starttls_with_auth_delivers_only_to_a_client_that_trusts_the_certificate(tmp_path):
    tls = self_signed(tmp_path)
    with smtp_server("starttls", tls=tls, auth=True) as (inbox, port):
        base = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "starttls",
                "smtp_user": USER, "smtp_password": PASSWORD, "attempts_per_round": 1}
        from alerting.settings import AlertingSettings

        untrusting = AlertingSettings(**base)
        refused = send_test_notice(email_rule(), untrusting, datetime.now(UTC))
        assert not refused.delivered and "CERTIFICATE_VERIFY_FAILED" in (refused.error or "")
        trusting = AlertingSettings(**base, smtp_ca_file=tls[0])
        outcome = send_test_notice(email_rule(), trusting, datetime.now(UTC))
        assert outcome.delivered, outcome.error
        wrong = AlertingSettings(**{**base, "smtp_password": "nope"}, smtp_ca_file=tls[0],
                                 timeout_s=2)
        denied = send_test_notice(email_rule(), wrong, datetime.now(UTC))
        # smtplib tries PLAIN then LOGIN; aiosmtpd answers 535 or drops the session.
        assert not denied.delivered and denied.error and not denied.permanent
    assert inbox.logins == [USER] and len(inbox.messages) == 1
    msg = inbox.messages[0].message
    assert msg["Subject"].startswith("[TEST] 5xx on orders")
    assert "TEST notification" in msg.get_body(("plain",)).get_content()


def test_implicit_tls_and_plain_auth_are_supported(tmp_path):
    from alerting.settings import AlertingSettings

    tls = self_signed(tmp_path)
    with smtp_server("ssl", tls=tls) as (inbox, port):
        ok = send_test_notice(email_rule(), AlertingSettings(
            smtp_host="127.0.0.1", smtp_port=port, smtp_security="ssl", smtp_ca_file=tls[0]),
            datetime.now(UTC))
        assert ok.delivered, ok.error
    with smtp_server("plain", auth=True) as (authed, port):
        without = send_test_notice(email_rule(), AlertingSettings(
            smtp_host="127.0.0.1", smtp_port=port, smtp_security="plain",
            attempts_per_round=1), datetime.now(UTC))
        with_auth = send_test_notice(email_rule(), AlertingSettings(
            smtp_host="127.0.0.1", smtp_port=port, smtp_security="plain", smtp_user=USER,
            smtp_password=PASSWORD), datetime.now(UTC))
    assert len(inbox.messages) == 1 and inbox.messages[0].rcpt_tos == TO
    assert not without.delivered and without.attempts == 1  # 530 auth required
    assert with_auth.delivered and authed.logins == [USER] and len(authed.messages) == 1


def test_webhooks_are_signed_with_the_secret_shown_once_and_verified_by_the_receiver(
        db, receiver, settings, api):
    a = tenant(db, "signed")
    now = datetime.now(UTC).replace(second=10, microsecond=0)
    insert_metrics(db, "metrics_1m", [Metric(now.replace(second=0), a.pid, "c1", "/x", "GET",
                                             2, [1.0] * 5)])
    made = api.post("/api/v1/alerts/rules", headers=a.admin, json=rule(
        name="drop", metric="request_count", comparator="<", threshold=10, channel="webhook",
        target=receiver.url + WEBHOOK_PATH)).json()
    secret = made["signing_secret"]
    assert secret.startswith("whsec_") and len(secret) == 6 + 64
    listed = api.get("/api/v1/alerts/rules", headers=a.admin).json()
    assert all("signing_secret" not in r for r in listed)  # shown once, at creation
    receiver.webhook_secret = secret
    try:
        assert run_round(settings, now=now).delivered == 1
        assert receiver.refused == []
        (hook,) = receiver.to(WEBHOOK_PATH)
        assert hook["kind"] == "firing" and hook["test"] is False
        assert receiver.accepted == [str(hook["event_id"])]

        body = b'{"kind":"firing","value":0.0}'
        url = receiver.url + WEBHOOK_PATH
        json_type = {"Content-Type": "application/json"}
        good = sign(secret, body)
        assert httpx.post(url, content=body, headers={
            **json_type, SIGNATURE_HEADER: good}).status_code == 204
        tampered = httpx.post(url, content=body.replace(b"0.0", b"9.9"),
                              headers={**json_type, SIGNATURE_HEADER: good})
        stale = httpx.post(url, content=body, headers={
            **json_type, SIGNATURE_HEADER: sign(secret, body, int(time.time()) - 301)})
        assert (tampered.status_code, stale.status_code) == (401, 401)
        assert receiver.refused == ["signature does not match the body",
                                    "timestamp outside the 300 s replay window"]

        receiver.webhook_secret = "whsec_someone-else"  # a receiver holding another secret
        outcome = Notifier(settings).send(_notice_for(db, made["rule_id"], now))
        assert not outcome.delivered and outcome.permanent and "HTTP 401" in (outcome.error or "")
    finally:
        receiver.webhook_secret = None


def _notice_for(db, rule_id: int, now: datetime):
    from alerting.notify import Notice
    from alerting.rules import RULE_COLUMNS

    row = db.execute(f"SELECT {RULE_COLUMNS} FROM alert_rules r WHERE rule_id = %s",  # noqa: S608
                     (rule_id,)).fetchone()
    return Notice(1, Rule(*row), "firing", 1.0, now - timedelta(minutes=5), now, now)


def test_a_recipient_the_server_refuses_fails_at_once_and_a_dead_server_is_retried():
    from alerting.settings import AlertingSettings

    with smtp_server() as (inbox, port):
        inbox.refuse = set(TO)
        sending = AlertingSettings(smtp_host="127.0.0.1", smtp_port=port,
                                   smtp_security="plain", attempts_per_round=2)
        refused = send_test_notice(email_rule(), sending, datetime.now(UTC))
    assert (refused.delivered, refused.permanent, refused.attempts) == (False, True, 1)
    assert "550" in (refused.error or "") and inbox.messages == []
    down = send_test_notice(email_rule(), sending, datetime.now(UTC))  # server stopped
    assert (down.delivered, down.permanent, down.attempts) == (False, False, 2)
