"""The state machine of one rule member, pure: (rule, assessment, state) → state, event.

A rule without fan-out has one member (''); a fan-out rule one per endpoint or API key,
each with its own state and cooldown.

- Whether a member *breaches* is ``alerting/assess.py``'s answer for the rule's type.
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

from alerting.assess import Assessment
from alerting.rules import Rule


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


def decide(rule: Rule, assessment: Assessment, state: State | None,
           now: datetime) -> tuple[State, Event | None]:
    """The member's next state and the event to record (if any)."""
    breach, value = assessment.breach, assessment.value
    firing = state is not None and state.firing
    last = state.last_notified_at if state is not None else None
    if breach and not firing:
        cooling = last is not None and now - last < timedelta(minutes=rule.cooldown_minutes)
        if cooling:
            return State(True, now, last), Event("firing", value, "suppressed")
        return State(True, now, now), Event("firing", value, "pending")
    if firing and not breach:
        assert state is not None  # noqa: S101 - firing implies a state
        was_sent = last is not None and last >= state.since
        return State(False, now, last), Event("resolved", value,
                                              "pending" if was_sent else "suppressed")
    if state is None:
        return State(False, now, None), None
    return state, None
