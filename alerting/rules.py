"""A rule as the service reads it, and its measure over a window of minutes.

The names a rule may use are defined in ``schemas/alerts.py`` (shared with the query API);
comparators are looked up here, never pasted into SQL.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

COMPARATORS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: int
    project_id: str
    name: str
    metric: str
    comparator: str
    threshold: float
    window_minutes: int
    min_requests: int
    cooldown_minutes: int
    endpoint: str | None
    api_key: str | None
    method: str | None
    channel: str
    target: str
    # Webhook HMAC key (alerting/webhook_signing.py); kept out of reprs and logs.
    signing_secret: str = field(default="", repr=False)
    rule_type: str = "threshold"  # schemas.alerts.RuleType
    scope: str = "rule"  # schemas.alerts.Scope: one state, or one per endpoint / API key
    direction: str = "up"
    change_mode: str = "percent"
    baseline_days: int = 7


RULE_COLUMNS: Final = ", ".join(f"r.{name}" for name in Rule.__dataclass_fields__)
"""``Rule``'s fields as the select list of ``alert_rules r``: ``Rule(*row[:RULE_WIDTH])``."""
RULE_WIDTH: Final = len(Rule.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Window:
    """What the rule's window of minutes holds."""

    requests: int
    errors: int
    server_errors: int
    latency_sum: float
    p50: float | None
    p95: float | None
    p99: float | None
    start: datetime
    end: datetime


def value_of(metric: str, w: Window) -> float | None:
    """The rule's measure over the window; None when it is undefined (no requests)."""
    if metric == "request_count":
        return float(w.requests)
    if w.requests == 0:
        return None
    match metric:
        case "error_rate":
            return w.errors / w.requests
        case "server_error_rate":
            return w.server_errors / w.requests
        case "latency_avg":
            return w.latency_sum / w.requests
        case "latency_p50":
            return w.p50
        case "latency_p95":
            return w.p95
        case "latency_p99":
            return w.p99
    raise ValueError(f"unknown metric {metric!r}")
