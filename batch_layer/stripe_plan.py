"""What Stripe is owed for one (project, api_key, day, meter): pure arithmetic, no I/O.

The local export log is the authority: ``billed`` is the sum of the live events it
records, minus the credits already flagged. A re-run day that grew sends the difference
(after withdrawing any open credit it makes unnecessary). One that shrank cancels the
newest events still inside Stripe's 24-hour cancel window and re-sends what they carried
minus the excess; what cannot be cancelled any more becomes a credit for a person to
issue, never a silent re-bill.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime

from batch_layer.repository import BilledDay, ExportKey
from batch_layer.stripe_rules import cancellable, day_timestamp


@dataclass(frozen=True)
class MeterEvent:
    """One meter event to send (and the bookkeeping to record once Stripe accepted it)."""

    identifier: str
    event_name: str
    stripe_customer_id: str
    value: int
    timestamp: int
    project_id: str
    api_key: str
    day: date
    revision: int

    @property
    def key(self) -> ExportKey:
        return (self.project_id, self.api_key, self.day, self.event_name)


@dataclass(frozen=True)
class LoggedEvent:
    """A live (not cancelled) event of the export log."""

    identifier: str
    revision: int
    value: int
    sent_at: datetime
    channel: str


@dataclass(frozen=True)
class KeyState:
    """Everything known locally about one (project, api_key, day, meter)."""

    key: ExportKey
    stripe_customer_id: str
    exact: int
    live: tuple[LoggedEvent, ...] = ()
    last_revision: int = 0
    credited: int = 0      # credits a person has issued
    open_credit: int = 0   # flagged, not yet issued

    @property
    def billed(self) -> int:
        """What the customer pays today for this key: live events minus credits."""
        return sum(e.value for e in self.live) - self.credited - self.open_credit


@dataclass(frozen=True)
class Correction:
    """Cancel these events, then send ``send``; change the open credit by ``credit_delta``."""

    state: KeyState
    cancel: tuple[LoggedEvent, ...] = ()
    send: MeterEvent | None = None
    credit_delta: int = 0
    notes: list[str] = field(default_factory=list)


def meter_value(row: BilledDay, source: str) -> int:
    """The quantity a meter bills: a billing_usage column or one tier's requests."""
    if source.startswith("tier:"):
        return row.requests_by_tier.get(source[5:], 0)
    value: int = getattr(row, source)
    return value


def event_identifier(key: ExportKey, revision: int) -> str:
    """Deterministic and opaque (api keys may be sensitive); Stripe allows ≤ 100 chars."""
    project_id, api_key, day, event_name = key
    text = "\x1f".join([project_id, api_key, day.isoformat(), event_name, str(revision)])
    return "tsl_" + hashlib.sha256(text.encode()).hexdigest()[:40]


def new_event(state: KeyState, value: int) -> MeterEvent:
    project_id, api_key, day, event_name = state.key
    revision = state.last_revision + 1
    return MeterEvent(
        identifier=event_identifier(state.key, revision), event_name=event_name,
        stripe_customer_id=state.stripe_customer_id, value=value,
        timestamp=day_timestamp(day), project_id=project_id, api_key=api_key, day=day,
        revision=revision,
    )


def plan_key(state: KeyState, now: datetime,
             uncancellable: Collection[str] = ()) -> Correction | None:
    """The correction that makes Stripe bill ``state.exact``, or None when it already does.

    ``uncancellable`` names identifiers whose cancel Stripe refused in this run.
    """
    billed = state.billed
    if state.exact == billed:
        return None
    if state.exact > billed:
        grow = state.exact - billed
        withdraw = min(state.open_credit, grow)
        rest = grow - withdraw
        return Correction(state, send=new_event(state, rest) if rest else None,
                          credit_delta=-withdraw)
    excess = billed - state.exact
    candidates = sorted(
        (e for e in state.live if e.channel != "summary" and e.identifier not in uncancellable
         and cancellable(e.sent_at, now)),
        key=lambda e: e.revision, reverse=True)
    chosen: list[LoggedEvent] = []
    taken = 0
    for event in candidates:
        if taken >= excess:
            break
        chosen.append(event)
        taken += event.value
    if taken >= excess:
        resend = taken - excess
        return Correction(state, cancel=tuple(chosen),
                          send=new_event(state, resend) if resend else None)
    return Correction(state, cancel=tuple(chosen), credit_delta=excess - taken)
