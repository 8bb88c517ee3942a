"""Whether one rule member breaches, from what the round's queries measured (pure).

Each rule type turns its numbers into one value compared with the rule's threshold:

- ``threshold``: the metric over the window, ``comparator`` ``threshold``.
- ``dynamic``: the window's metric as a z-score against the mean and standard deviation
  of the member's hourly values over the last ``baseline_days`` (hours with fewer than
  ``min_requests`` requests left out in SQL); breaches past ``threshold`` (k) deviations
  in ``direction``. A baseline of fewer than three hours, or flat, never breaches.
- ``rate_of_change``: the window against the window before it, as a fraction
  (``percent``: 0.5 = +50 %) or a difference (``absolute``); ``direction`` up, down, either.
- ``volume``: requests in the window as a fraction of the same window a week earlier;
  ``down`` breaches below ``threshold`` (an outage), ``up`` above it (a spike). A week-ago
  window with fewer than ``min_requests`` requests is no baseline.
- ``quota``: the share of the key's monthly quota used (>= ``threshold``).
- ``quota_forecast``: hours until the monthly quota is used up at the window's rate;
  breaches when that is at most ``threshold`` hours and before the month resets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from alerting.rules import COMPARATORS, Rule, Window, value_of

MIN_BASELINE_HOURS: Final = 3


@dataclass(frozen=True, slots=True)
class Baseline:
    """A member's hourly values over the baseline (already scaled to the window)."""

    mean: float
    stddev: float | None
    hours: int


@dataclass(frozen=True, slots=True)
class QuotaUse:
    used: int  # requests this month, open minute included
    limit: int
    recent: int  # requests in the rule's window (the forecast's rate)
    month_end: datetime


@dataclass(frozen=True, slots=True)
class Assessment:
    breach: bool
    value: float | None
    window_start: datetime
    window_end: datetime
    detail: dict[str, Any] = field(default_factory=dict)


def empty_window(start: datetime, end: datetime) -> Window:
    return Window(0, 0, 0, 0.0, None, None, None, start, end)


def _enough(rule: Rule, w: Window) -> bool:
    """Rates and latencies of a few requests are noise; counts need no minimum."""
    return rule.metric == "request_count" or w.requests >= rule.min_requests


def _past(direction: str, value: float, limit: float) -> bool:
    if direction == "up":
        return value > limit
    if direction == "down":
        return value < -limit
    return abs(value) > limit


def assess(rule: Rule, now_w: Window, *, before: Window | None = None,
           week_ago: Window | None = None, baseline: Baseline | None = None,
           quota: QuotaUse | None = None, now: datetime | None = None) -> Assessment:
    """The member's breach, value and what the notification reports besides it."""
    start, end = now_w.start, now_w.end
    kind = rule.rule_type
    detail: dict[str, Any]
    if kind == "threshold":
        value = value_of(rule.metric, now_w)
        breach = (value is not None and _enough(rule, now_w)
                  and COMPARATORS[rule.comparator](value, rule.threshold))
        return Assessment(breach, value, start, end)
    if kind == "dynamic":
        current = value_of(rule.metric, now_w)
        if current is None or baseline is None:
            return Assessment(False, None, start, end, {"current": current})
        detail = {"current": current, "mean": baseline.mean, "stddev": baseline.stddev,
                  "baseline_hours": baseline.hours, "baseline_days": rule.baseline_days}
        if (baseline.hours < MIN_BASELINE_HOURS or not baseline.stddev
                or not _enough(rule, now_w)):
            return Assessment(False, None, start, end, detail)
        z = (current - baseline.mean) / baseline.stddev
        return Assessment(_past(rule.direction, z, rule.threshold), z, start, end, detail)
    if kind == "rate_of_change":
        prev_w = before or empty_window(start - (end - start), start)
        current, previous = value_of(rule.metric, now_w), value_of(rule.metric, prev_w)
        detail = {"current": current, "previous": previous, "mode": rule.change_mode}
        if (current is None or previous is None or not _enough(rule, now_w)
                or not _enough(rule, prev_w)):
            return Assessment(False, None, start, end, detail)
        if rule.change_mode == "absolute":
            change: float | None = current - previous
        else:
            change = (current - previous) / previous if previous else None
        if change is None:
            return Assessment(False, None, start, end, detail)
        return Assessment(_past(rule.direction, change, rule.threshold), change, start, end,
                          detail)
    if kind == "volume":
        week = week_ago.requests if week_ago is not None else 0
        detail = {"requests": now_w.requests, "week_ago": week}
        if week == 0 or week < rule.min_requests:
            return Assessment(False, None, start, end, detail)
        ratio = now_w.requests / week
        breach = ratio < rule.threshold if rule.direction == "down" else ratio > rule.threshold
        return Assessment(breach, ratio, start, end, detail)
    if kind in ("quota", "quota_forecast"):
        if quota is None:
            return Assessment(False, None, start, end)
        detail = {"used": quota.used, "limit": quota.limit}
        if kind == "quota":
            share = quota.used / quota.limit if quota.limit else 1.0
            return Assessment(share >= rule.threshold, share, start, end, detail)
        per_hour = quota.recent * 60.0 / rule.window_minutes
        detail["rate_per_hour"] = per_hour
        left = quota.limit - quota.used
        if left <= 0:
            hours = 0.0
        elif per_hour <= 0:
            return Assessment(False, None, start, end, detail)
        else:
            hours = left / per_hour
        at = (now or end) + timedelta(hours=hours)
        detail["exhausts_at"] = at.isoformat()
        breach = hours <= rule.threshold and at < quota.month_end
        return Assessment(breach, hours, start, end, detail)
    raise ValueError(f"unknown rule type {kind!r}")
