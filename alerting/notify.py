"""Sending a firing, resolved or test event to its rule's channel.

Slack, PagerDuty (Events API v2), a signed webhook (``alerting/webhook_signing.py``) or
email (``alerting/email.py``).

A send is retried with backoff (honouring ``Retry-After`` on 429) a few times per round;
an event not delivered stays ``pending`` for the next round, up to ``max_rounds``, so a
notification outage delays pages rather than dropping them.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import httpx

from alerting import describe, email
from alerting.rules import Rule
from alerting.settings import AlertingSettings
from alerting.webhook_signing import EVENT_ID_HEADER, SIGNATURE_HEADER, sign

TEST_EVENT_ID = 0  # a test-fire is recorded nowhere: no event row, no state


@dataclass(frozen=True, slots=True)
class Notice:
    """One event to deliver, with what a human needs to act on it."""

    event_id: int
    rule: Rule
    kind: str  # "firing" | "resolved" | "test" | "test_resolved" (test-fires: marked TEST)
    value: float | None
    window_start: datetime
    window_end: datetime
    at: datetime
    member: str = ""  # the endpoint or API key of a fan-out rule that breached
    detail: dict[str, Any] = field(default_factory=dict)  # see alerting/assess.py


_MEMBER_NAME = {"each_endpoint": "endpoint", "each_api_key": "consumer"}


def _scope(rule: Rule, member: str = "") -> str:
    parts = [f"project {rule.project_id}"]
    parts += [f"{name} {value}" for name, value in (
        ("method", rule.method), ("endpoint", rule.endpoint), ("consumer", rule.api_key),
        (_MEMBER_NAME.get(rule.scope, ""), member)) if value]
    return ", ".join(parts)


def _number(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def headline(n: Notice) -> str:
    state = {"firing": "FIRING", "resolved": "RESOLVED"}.get(n.kind, "TEST")
    who = f" [{_MEMBER_NAME[n.rule.scope]} {n.member}]" if n.member else ""
    return f"[{state}] {n.rule.name}{who}: {describe.headline_value(n.rule, n.value)}"


def condition(n: Notice) -> str:
    """The rule's condition and the numbers behind the value, in words."""
    return describe.condition(n.rule, n.value, n.detail)


def summary(n: Notice) -> str:
    return f"{headline(n)} ({condition(n)}; {_scope(n.rule, n.member)})"


def _payload(n: Notice, settings: AlertingSettings) -> tuple[str, dict[str, Any]]:
    r = n.rule
    if r.channel == "slack":
        return r.target, {"text": summary(n)}
    details = {"rule_id": r.rule_id, "metric": r.metric, "value": n.value,
               "comparator": r.comparator, "threshold": r.threshold,
               "window_start": n.window_start.isoformat(),
               "window_end": n.window_end.isoformat(), "endpoint": r.endpoint,
               "api_key": r.api_key, "method": r.method, "rule_type": r.rule_type,
               "scope": r.scope, "member": n.member or None, "detail": n.detail,
               "condition": condition(n)}
    if r.channel == "pagerduty":
        # A test has its own dedup key, so it never merges with (or resolves) a real page.
        test = "-test" if n.kind.startswith("test") else ""
        resolve = n.kind in ("resolved", "test_resolved")
        body: dict[str, Any] = {
            "routing_key": r.target,
            "event_action": "resolve" if resolve else "trigger",
            "dedup_key": f"turnstile-rule-{r.rule_id}{test}" + (
                f"-{member_key(n.member)}" if n.member else ""),
        }
        if not resolve:
            body["payload"] = {"summary": summary(n)[:1024], "source": f"turnstile/{r.project_id}",
                               "severity": "info" if test else "error",
                               "timestamp": n.at.isoformat(),
                               "component": (n.member if r.scope == "each_endpoint"
                                             else None) or r.endpoint or r.project_id,
                               "custom_details": details}
        return settings.pagerduty_events_url, body
    return r.target, {"kind": n.kind, "test": n.kind.startswith("test"), "event_id": n.event_id,
                      "summary": summary(n), "rule_name": r.name,
                      "project_id": r.project_id, "at": n.at.isoformat(), **details}


def member_key(member: str) -> str:
    """A member in a dedup key: PagerDuty keys are at most 255 characters."""
    if len(member) <= 64 and member.isascii():
        return member
    return "h" + hashlib.sha256(member.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    attempts: int
    error: str | None = None
    permanent: bool = False  # the receiver refused the request itself: retrying is useless


def _accepted(channel: str, response: httpx.Response) -> bool:
    if channel == "pagerduty":
        return response.status_code == 202
    return 200 <= response.status_code < 300


class Notifier:
    """One HTTP client for every send of a round."""

    def __init__(self, settings: AlertingSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.Client(timeout=settings.timeout_s)

    def send(self, notice: Notice) -> Outcome:
        # Rules written to the table directly skip the API's check: checked again here.
        refused = self.settings.targets.problem(notice.rule.channel, notice.rule.target)
        if refused is not None:
            return Outcome(False, 0, f"target refused: must be {refused}", permanent=True)
        error: str | None = None
        for attempt in range(1, self.settings.attempts_per_round + 1):
            wait = 0.5 * 2 ** (attempt - 1)
            if notice.rule.channel == "email":
                error, permanent = self._email(notice)
            else:
                error, permanent, retry_after = self._post(notice)
                wait = retry_after if retry_after is not None else wait
            if error is None:
                return Outcome(True, attempt)
            if permanent:
                return Outcome(False, attempt, error, permanent=True)
            if attempt < self.settings.attempts_per_round:
                time.sleep(wait)
        return Outcome(False, self.settings.attempts_per_round, error)

    def _post(self, notice: Notice) -> tuple[str | None, bool, float | None]:
        """One HTTP try: (error or None, permanent, Retry-After seconds)."""
        url, body = _payload(notice, self.settings)
        content = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if notice.rule.channel == "webhook":  # signed per try: the timestamp is fresh
            headers[SIGNATURE_HEADER] = sign(notice.rule.signing_secret, content)
            headers[EVENT_ID_HEADER] = str(notice.event_id)
        try:
            response = self.client.post(url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", False, None
        if _accepted(notice.rule.channel, response):
            return None, False, None
        error = f"HTTP {response.status_code}: {response.text[:200]}"
        if response.status_code == 429:
            retry_after = response.headers.get("retry-after", "")
            return error, False, min(float(retry_after), 10.0) if retry_after.isdigit() else None
        return error, 400 <= response.status_code < 500, None

    def _email(self, notice: Notice) -> tuple[str | None, bool]:
        msg = email.compose(notice, self.settings, headline(notice),
                            _scope(notice.rule, notice.member), _number(notice.value),
                            condition(notice))
        try:
            email.send(msg, self.settings)
        except (smtplib.SMTPException, OSError) as exc:
            return f"SMTP {type(exc).__name__}: {exc}"[:300], email.permanent(exc)
        return None, False

    def close(self) -> None:
        self.client.close()


def send_test_notice(rule: Rule, settings: AlertingSettings, now: datetime,
              notifier: Notifier | None = None) -> Outcome:
    """Send a notification marked TEST through ``rule``'s channel, recording nothing.

    No event row and no state change: the rule's cooldown and firing state stay as they
    were. PagerDuty gets a separate dedup key and severity ``info``, and the test incident
    is resolved right after it was accepted (nobody has to close it by hand).
    """
    end = now.replace(second=0, microsecond=0)
    notice = Notice(TEST_EVENT_ID, rule, "test", None,
                    end - timedelta(minutes=rule.window_minutes), end, now)
    sender = notifier or Notifier(settings)
    try:
        outcome = sender.send(notice)
        if outcome.delivered and rule.channel == "pagerduty":
            sender.send(replace(notice, kind="test_resolved"))
        return outcome
    finally:
        if notifier is None:
            sender.close()
