"""Sending a firing/resolved event to Slack, PagerDuty (Events API v2) or a webhook.

A send is retried with backoff (honouring ``Retry-After`` on 429) a few times per round;
an event not delivered stays ``pending`` for the next round, up to ``max_rounds``, so a
notification outage delays pages rather than dropping them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from alerting.rules import Rule
from alerting.settings import AlertingSettings


@dataclass(frozen=True, slots=True)
class Notice:
    """One event to deliver, with what a human needs to act on it."""

    event_id: int
    rule: Rule
    kind: str
    value: float | None
    window_start: datetime
    window_end: datetime
    at: datetime


def _scope(rule: Rule) -> str:
    parts = [f"project {rule.project_id}"]
    parts += [f"{name} {value}" for name, value in (
        ("method", rule.method), ("endpoint", rule.endpoint), ("consumer", rule.api_key))
        if value]
    return ", ".join(parts)


def _number(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def summary(n: Notice) -> str:
    r = n.rule
    state = "FIRING" if n.kind == "firing" else "RESOLVED"
    return (f"[{state}] {r.name}: {r.metric} {_number(n.value)} "
            f"({r.comparator} {r.threshold:g} over {r.window_minutes} min; {_scope(r)})")


def _payload(n: Notice, settings: AlertingSettings) -> tuple[str, dict[str, Any]]:
    r = n.rule
    if r.channel == "slack":
        return r.target, {"text": summary(n)}
    details = {"rule_id": r.rule_id, "metric": r.metric, "value": n.value,
               "comparator": r.comparator, "threshold": r.threshold,
               "window_start": n.window_start.isoformat(),
               "window_end": n.window_end.isoformat(), "endpoint": r.endpoint,
               "api_key": r.api_key, "method": r.method}
    if r.channel == "pagerduty":
        body: dict[str, Any] = {
            "routing_key": r.target,
            "event_action": "trigger" if n.kind == "firing" else "resolve",
            "dedup_key": f"turnstile-rule-{r.rule_id}",
        }
        if n.kind == "firing":
            body["payload"] = {"summary": summary(n)[:1024], "source": f"turnstile/{r.project_id}",
                               "severity": "error", "timestamp": n.at.isoformat(),
                               "component": r.endpoint or r.project_id,
                               "custom_details": details}
        return settings.pagerduty_events_url, body
    return r.target, {"kind": n.kind, "summary": summary(n), "rule_name": r.name,
                      "project_id": r.project_id, "at": n.at.isoformat(), **details}


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
        url, body = _payload(notice, self.settings)
        error: str | None = None
        for attempt in range(1, self.settings.attempts_per_round + 1):
            wait = 0.5 * 2 ** (attempt - 1)
            try:
                response = self.client.post(url, json=body)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if _accepted(notice.rule.channel, response):
                    return Outcome(True, attempt)
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code == 429:
                    retry_after = response.headers.get("retry-after", "")
                    wait = min(float(retry_after), 10.0) if retry_after.isdigit() else wait
                elif 400 <= response.status_code < 500:
                    return Outcome(False, attempt, error, permanent=True)
            if attempt < self.settings.attempts_per_round:
                time.sleep(wait)
        return Outcome(False, self.settings.attempts_per_round, error)

    def close(self) -> None:
        self.client.close()
