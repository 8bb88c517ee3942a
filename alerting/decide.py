"""The state machine of one rule, pure: (rule, window, state, now) → new state, event.

- A rule *breaches* when its measure is defined, the window holds at least
  ``min_requests`` requests (rates and latencies of three requests are noise), and the
  comparison holds. ``request_count`` rules (a traffic drop) need no minimum.
- ok → breach: the rule starts firing and a ``firing`` event is sent, unless a
  notification of this rule went out less than ``cooldown_minutes`` ago (a flapping rule
  pages once): then the event is recorded as ``suppressed``.
- firing → no breach: the rule resolves; the ``resolved`` event is sent only if its firing
  was sent (nobody is told "resolved" about a page they never got).
- Anything else changes no state but the last value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from alerting.rules import COMPARATORS, Rule, Window, value_of


@dataclass(frozen=True, slots=True)
class State:
    firing: bool
    since: datetime
    last_notified_at: datetime | None


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # "firing" | "resolved"
    value: float | None
    delivery: str  # "pending" (to send) | "suppressed"


def breached(rule: Rule, window: Window) -> tuple[bool, float | None]:
    value = value_of(rule.metric, window)
    if value is None:
        return False, None
    if rule.metric != "request_count" and window.requests < rule.min_requests:
        return False, value
    return COMPARATORS[rule.comparator](value, rule.threshold), value


def decide(rule: Rule, window: Window, state: State | None,
           now: datetime) -> tuple[State, Event | None, float | None]:
    """The rule's next state, the event to record (if any) and the measured value."""
    breach, value = breached(rule, window)
    firing = state is not None and state.firing
    last = state.last_notified_at if state is not None else None
    if breach and not firing:
        cooling = last is not None and now - last < timedelta(minutes=rule.cooldown_minutes)
        if cooling:
            return State(True, now, last), Event("firing", value, "suppressed"), value
        return State(True, now, now), Event("firing", value, "pending"), value
    if firing and not breach:
        assert state is not None  # noqa: S101 - firing implies a state
        was_sent = last is not None and last >= state.since
        event = Event("resolved", value, "pending" if was_sent else "suppressed")
        return State(False, now, last), event, value
    if state is None:
        return State(False, now, None), None, value
    return state, None, value
