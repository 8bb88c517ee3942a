"""The vocabulary of alert rules, shared by the alerting service and the query API.

Metric, comparator and channel names are closed lists (never pasted into SQL). Rates are
fractions (0.05 = 5 %) as everywhere in the query API; latencies are milliseconds. Where a
notification may go is a policy both services read from the same environment: a rule's
Slack or webhook URL must start with an allowed prefix, so nobody can make the alerting
service POST to arbitrary hosts inside the network.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

Metric = Literal["request_count", "error_rate", "server_error_rate", "latency_avg",
                 "latency_p50", "latency_p95", "latency_p99"]
Comparator = Literal[">", ">=", "<", "<="]
Channel = Literal["slack", "pagerduty", "webhook", "email"]
RuleType = Literal["threshold", "dynamic", "rate_of_change", "volume", "quota", "quota_forecast"]
Scope = Literal["rule", "each_endpoint", "each_api_key"]
Direction = Literal["up", "down", "either"]
ChangeMode = Literal["percent", "absolute"]

# What a rule type compares when no threshold, window or direction is given: k = 2
# standard deviations, +50 % in 5 minutes, below 50 % of the same hour last week, 80 %
# of the monthly quota, exhaustion within 24 hours at the last hour's rate.
TYPE_DEFAULTS: Final[dict[str, dict[str, object]]] = {
    "threshold": {"window_minutes": 5, "direction": "up"},
    "dynamic": {"threshold": 2.0, "window_minutes": 5, "direction": "either"},
    "rate_of_change": {"threshold": 0.5, "window_minutes": 5, "direction": "up"},
    "volume": {"threshold": 0.5, "window_minutes": 60, "direction": "down",
               "metric": "request_count"},
    "quota": {"threshold": 0.8, "window_minutes": 5, "direction": "up",
              "metric": "request_count"},
    "quota_forecast": {"threshold": 24.0, "window_minutes": 60, "direction": "up",
                       "metric": "request_count"},
}

# One default for the API model and the table (migration 0080 aligns the column defaults).
DEFAULT_MIN_REQUESTS: Final = 20  # rates and latencies of fewer requests are noise
DEFAULT_COOLDOWN_MINUTES: Final = 15  # the design's: a flapping rule pages once

MAX_EMAIL_RECIPIENTS: Final = 20
_ROUTING_KEY: Final = re.compile(r"^[A-Za-z0-9]{20,64}$")
# Deliberately plain (no display names, no quoting): what an on-call list looks like.
_EMAIL: Final = re.compile(r"^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def rule_problems(rule: dict[str, object]) -> list[tuple[str, str]]:
    """What is wrong with a rule's fields, as (field, why), after ``TYPE_DEFAULTS``.

    The API answers these as a 400 naming the field; the CLI prints them.
    """
    kind, problems = rule.get("rule_type", "threshold"), []
    threshold = rule.get("threshold")
    if threshold is None:
        problems.append(("threshold", f"required for {kind} rules"))
    if rule.get("metric") is None:
        problems.append(("metric", f"required for {kind} rules"))
    if kind == "threshold" and rule.get("comparator") is None:
        problems.append(("comparator", "required for threshold rules (>, >=, <, <=)"))
    if kind in ("dynamic", "rate_of_change", "volume", "quota", "quota_forecast") and (
            isinstance(threshold, int | float) and threshold <= 0):
        problems.append(("threshold", f"must be > 0 for {kind} rules"))
    if kind in ("volume", "quota", "quota_forecast") and rule.get("metric") != "request_count":
        problems.append(("metric", f"{kind} rules measure request_count"))
    if kind == "volume" and rule.get("direction") == "either":
        problems.append(("direction", "volume rules are 'down' (outage) or 'up' (spike)"))
    if kind in ("quota", "quota_forecast"):
        if rule.get("scope") == "each_endpoint":
            problems.append(("scope", "quotas are per API key: 'rule' or 'each_api_key'"))
        if rule.get("scope") == "rule" and not rule.get("api_key"):
            problems.append(("api_key", "a quota rule needs api_key or scope each_api_key"))
    if rule.get("scope") == "each_endpoint" and rule.get("endpoint"):
        problems.append(("endpoint", "cannot filter one endpoint and fan out over each"))
    if rule.get("scope") == "each_api_key" and rule.get("api_key"):
        problems.append(("api_key", "cannot filter one API key and fan out over each"))
    return problems


def with_type_defaults(rule: dict[str, object]) -> dict[str, object]:
    """``rule`` with its type's defaults where a field was left out (None)."""
    kind = str(rule.get("rule_type") or "threshold")
    defaults = TYPE_DEFAULTS.get(kind, {})  # an unknown type is rule_problems' to report
    filled = {**rule, **{k: v for k, v in defaults.items() if rule.get(k) is None}}
    if kind != "threshold" and filled.get("comparator") is None:
        filled["comparator"] = ">"  # unused: the type and direction say what breaches
    return filled


def email_recipients(target: str) -> list[str]:
    """An email rule's target: comma-separated addresses."""
    return [part.strip() for part in target.split(",") if part.strip()]


class AlertTargetPolicy(BaseSettings):
    """``TURNSTILE_ALERTING_ALLOWED_TARGET_PREFIXES`` (JSON list), ``…_SLACK_URL_PREFIX``."""

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_ALERTING_", frozen=True,
                                      extra="ignore")

    allowed_target_prefixes: tuple[str, ...] = ("https://",)
    slack_url_prefix: str = "https://hooks.slack.com/"

    def problem(self, channel: str, target: str) -> str | None:
        """Why ``target`` cannot be used with ``channel``, or None when it can."""
        if channel == "pagerduty":
            if not _ROUTING_KEY.match(target):
                return "a PagerDuty routing key: 20-64 letters and digits"
            return None
        if channel == "email":
            recipients = email_recipients(target)
            if not 1 <= len(recipients) <= MAX_EMAIL_RECIPIENTS or not all(
                    _EMAIL.match(r) for r in recipients):
                return f"1-{MAX_EMAIL_RECIPIENTS} comma-separated email addresses (a@b.example)"
            return None
        if not target.startswith(self.allowed_target_prefixes):
            return f"a URL starting with one of {list(self.allowed_target_prefixes)}"
        if channel == "slack" and not target.startswith(self.slack_url_prefix):
            return f"a Slack incoming-webhook URL ({self.slack_url_prefix}...)"
        return None
