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

# One default for the API model and the table (migration 0080 aligns the column defaults).
DEFAULT_MIN_REQUESTS: Final = 20  # rates and latencies of fewer requests are noise
DEFAULT_COOLDOWN_MINUTES: Final = 15  # the design's: a flapping rule pages once

MAX_EMAIL_RECIPIENTS: Final = 20
_ROUTING_KEY: Final = re.compile(r"^[A-Za-z0-9]{20,64}$")
# Deliberately plain (no display names, no quoting): what an on-call list looks like.
_EMAIL: Final = re.compile(r"^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


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
