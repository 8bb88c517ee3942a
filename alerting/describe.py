"""A rule's value and condition in words, for every channel (pure).

The value means something different per rule type (``alerting/assess.py``): a metric, a
z-score, a change, a ratio to last week, a share of the quota, hours left. Notifications
say which, with the numbers behind it (the baseline, the window before, the forecast).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alerting.rules import Rule


def _n(value: Any) -> str:
    return "no data" if value is None else f"{float(value):.4g}"


def _pct(value: float | None) -> str:
    return "no data" if value is None else f"{value * 100:.3g} %"


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


_WAY = {"up": "above", "down": "below", "either": "away from"}


def headline_value(rule: Rule, value: float | None) -> str:
    """What the subject line says the value is."""
    match rule.rule_type:
        case "dynamic":
            return f"{rule.metric} {_n(value)} sd from its mean"
        case "rate_of_change":
            if rule.change_mode == "percent":
                return f"{rule.metric} changed {_pct(value)}"
            return f"{rule.metric} changed by {_n(value)}"
        case "volume":
            return f"requests at {_pct(value)} of last week"
        case "quota":
            return f"{_pct(value)} of the monthly quota used"
        case "quota_forecast":
            return f"monthly quota exhausted in {_n(value)} h"
    return f"{rule.metric} {_n(value)}"


def condition(rule: Rule, value: float | None, detail: dict[str, Any]) -> str:
    """The condition, and the numbers behind the value."""
    w = rule.window_minutes
    match rule.rule_type:
        case "dynamic":
            return (f"{rule.metric} over {w} min is {_n(detail.get('current'))}; "
                    f"{rule.baseline_days}-day hourly mean {_n(detail.get('mean'))}, sd "
                    f"{_n(detail.get('stddev'))}; fires {_WAY[rule.direction]} "
                    f"{rule.threshold:g} sd")
        case "rate_of_change":
            limit = (f"{rule.threshold * 100:g} %" if rule.change_mode == "percent"
                     else f"{rule.threshold:g}")
            return (f"{rule.metric} {_n(detail.get('current'))} over the last {w} min vs "
                    f"{_n(detail.get('previous'))} the {w} min before; fires "
                    f"{'on a change' if rule.direction == 'either' else rule.direction} "
                    f"of more than {limit}")
        case "volume":
            way = "below" if rule.direction == "down" else "above"
            return (f"{detail.get('requests', 0)} requests in the last {w} min vs "
                    f"{detail.get('week_ago', 0)} the same {w} min a week ago; fires {way} "
                    f"{rule.threshold * 100:g} %")
        case "quota":
            return (f"{detail.get('used', 0):,} of {detail.get('limit', 0):,} monthly "
                    f"requests used; fires at {rule.threshold * 100:g} %")
        case "quota_forecast":
            at = detail.get("exhausts_at")
            return (f"at {_n(detail.get('rate_per_hour'))} requests/h (last {w} min) "
                    f"{detail.get('used', 0):,} of {detail.get('limit', 0):,} used runs out "
                    f"{'at ' + _when(at) if at else 'never'}; fires within "
                    f"{rule.threshold:g} h")
    return f"{rule.comparator} {rule.threshold:g} over {w} min"
