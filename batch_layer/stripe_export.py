"""Stripe usage export: make Stripe bill each (api_key, day, meter) exactly, never twice.

For every day the export compares the exact figure (billing_usage) with what the local
log says Stripe bills, and corrects the difference (``stripe_plan``): growth is sent as a
new revision, a shrink is cancelled and re-sent inside Stripe's 24-hour window, and past
it flagged as a credit. Each event's ``identifier`` and Idempotency-Key are a hash of
(project, api_key, day, meter, revision), so a crash between Stripe's answer and the log
insert re-sends an identical request, which Stripe deduplicates for 24 hours. After that
Stripe no longer knows identifiers, so when a (customer, meter, day) has no log at all the
export first asks Stripe's meter event summaries what it already has and sends only the
rest. One exporter runs at a time (advisory lock), one call at a time.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import stripe

from batch_layer import stripe_repository as store
from batch_layer.repository import BilledDay, ExportKey
from batch_layer.settings import BatchSettings
from batch_layer.stripe_api import StripeMeters
from batch_layer.stripe_plan import (
    Correction,
    KeyState,
    LoggedEvent,
    MeterEvent,
    meter_value,
    plan_key,
)
from batch_layer.stripe_rules import (
    CANCEL_MARGIN,
    IDENTIFIER_WINDOW,
    STREAM_BATCH_MAX,
    DayOutOfRangeError,
    check_day,
    day_start,
)

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


@dataclass
class ExportReport:
    """What one export did; ``refused`` holds one message per day Stripe would refuse."""

    planned: int = 0
    sent: int = 0
    streamed: int = 0
    cancelled: int = 0
    credits_flagged: int = 0
    credits_withdrawn: int = 0
    rebuilt_from_summaries: int = 0
    settled: int = 0
    failed: int = 0
    unmapped_keys: int = 0
    rate_limited: int = 0
    refused: list[str] = field(default_factory=list)


def month_range(period: str) -> tuple[date, date]:
    """``YYYY-MM`` → [first day, first day of the next month)."""
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC).date()
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, end


def key_states(rows: Sequence[BilledDay], meters: Mapping[str, str],
               logs: Mapping[ExportKey, store.LogEntry],
               credits: Mapping[ExportKey, tuple[int, int]]) -> list[KeyState]:
    """Every key with something billed or logged.

    A logged key whose day was billed again without it is owed 0; a day not billed at all
    is left alone.
    """
    billed_days = {r.day for r in rows}
    states: dict[ExportKey, KeyState] = {}
    for row in rows:
        for event_name, source in sorted(meters.items()):
            key: ExportKey = (row.project_id, row.api_key, row.day, event_name)
            logged = logs.get(key)
            customer = row.stripe_customer_id or (logged.customer if logged else "")
            if customer:
                states[key] = _state(key, customer, meter_value(row, source), logged, credits)
    for key, logged in logs.items():
        if key not in states and key[2] in billed_days and key[3] in meters:
            states[key] = _state(key, logged.customer, 0, logged, credits)
    return [states[k] for k in sorted(states)]


def _state(key: ExportKey, customer: str, exact: int, logged: store.LogEntry | None,
           credits: Mapping[ExportKey, tuple[int, int]]) -> KeyState:
    credited, open_credit = credits.get(key, (0, 0))
    return KeyState(key=key, stripe_customer_id=customer, exact=exact,
                    live=tuple(logged.live) if logged else (),
                    last_revision=logged.last_revision if logged else 0,
                    credited=credited, open_credit=open_credit)


def write_csv(events: Sequence[MeterEvent], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(MeterEvent.__dataclass_fields__)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for event in events:
            writer.writerow(asdict(event))


class _Exporter:
    """One run: the connection, the API, the clock and the report it fills."""

    def __init__(self, settings: BatchSettings, conn: psycopg.Connection, api: StripeMeters,
                 clock: Clock, report: ExportReport) -> None:
        self.settings, self.conn, self.api, self.clock, self.report = (
            settings, conn, api, clock, report)

    def rebuild_lost_logs(self, states: list[KeyState], logs: Mapping[ExportKey, store.LogEntry]
                          ) -> list[KeyState]:
        """Adopt Stripe's summaries where a (customer, meter, day) has no log at all.

        So a lost log never bills twice: only what Stripe does not have yet is sent.
        """
        groups: dict[tuple[str, str, date], list[KeyState]] = defaultdict(list)
        for s in states:
            groups[(s.stripe_customer_id, s.key[3], s.key[2])].append(s)
        adopted: dict[ExportKey, KeyState] = {}
        for (customer, event_name, day), members in sorted(groups.items()):
            if any(m.key in logs for m in members) or not any(m.exact for m in members):
                continue
            start = day_start(day)
            have = self.api.summary(event_name, customer, start, start + timedelta(days=1))
            if have <= 0:
                continue
            now = self.clock()
            log.warning("stripe: no export log for %s/%s/%s but Stripe has %d; adopting it",
                        customer, event_name, day, have)
            for i, member in enumerate(members):
                take = have if i == len(members) - 1 else min(have, member.exact)
                have -= take
                if take:
                    adopted[member.key] = self._adopt(member, take, now)
            self.report.rebuilt_from_summaries += 1
        return [adopted.get(s.key, s) for s in states]

    def _adopt(self, state: KeyState, value: int, now: datetime) -> KeyState:
        # A revision no earlier run used, so later identifiers never collide with ones
        # Stripe may still remember from before the log was lost.
        revision = int(now.timestamp()) // 60
        text = "\x1f".join([*map(str, state.key), "summary", str(revision)])
        ident = "tss_" + hashlib.sha256(text.encode()).hexdigest()[:40]
        event = MeterEvent(ident, state.key[3], state.stripe_customer_id, value, 0,
                           state.key[0], state.key[1], state.key[2], revision)
        store.record_sent(self.conn, [event], "summary", now)
        return replace(state, live=(LoggedEvent(ident, revision, value, now, "summary"),),
                       last_revision=revision)

    def settle_uncertain(self, days: Sequence[date]) -> None:
        """Settle the calls whose answer was never recorded (a crash, a timeout).

        Inside Stripe's 24-hour identifier window the same request is made again, which
        Stripe deduplicates; otherwise (or if Stripe refuses it) the meter event summary of
        that customer, meter and day says which of them took effect.
        """
        leftovers: dict[tuple[str, str, date], list[store.Uncertain]] = defaultdict(list)
        for u in store.uncertain(self.conn, days):
            if self._retry_uncertain(u):
                self.report.settled += 1
            else:
                e = u.event
                leftovers[(e.stripe_customer_id, e.event_name, e.day)].append(u)
        for (customer, event_name, day), group in sorted(leftovers.items()):
            start = day_start(day)
            extra = (self.api.summary(event_name, customer, start, start + timedelta(days=1))
                     - store.settled_value(self.conn, customer, event_name, day))
            # cancels first: an uncancelled event is still in Stripe's figure
            for u in sorted(group, key=lambda u: (not u.cancel, u.event.revision)):
                took_effect = extra >= u.event.value
                if took_effect:
                    extra -= u.event.value
                if u.cancel and took_effect:    # still billed: the cancel never happened
                    store.clear_cancel_request(self.conn, u.event.identifier)
                elif u.cancel:
                    store.record_cancelled(self.conn, u.event.identifier, self.clock())
                elif took_effect:
                    store.mark_accepted(self.conn, [u.event.identifier])
                else:
                    store.drop_pending(self.conn, [u.event.identifier])
                self.report.settled += 1

    def _retry_uncertain(self, u: store.Uncertain) -> bool:
        now, e = self.clock(), u.event
        if now - u.sent_at >= IDENTIFIER_WINDOW - CANCEL_MARGIN:
            return False
        try:
            if u.cancel:
                self.api.cancel(e.event_name, e.identifier)
                store.record_cancelled(self.conn, e.identifier, now)
            else:
                if u.channel == "v2":
                    self.api.send_stream([e])
                else:
                    self.api.send(e)
                store.mark_accepted(self.conn, [e.identifier])
        except (stripe.InvalidRequestError, stripe.IdempotencyError) as exc:
            log.info("stripe: repeating %s refused (%s); asking the summaries", e.identifier,
                     exc)
            return False
        return True

    def apply(self, correction: Correction) -> MeterEvent | None:
        """Cancel and credit as planned; returns the event still to send (if any)."""
        state, tried = correction.state, set[str]()
        current: Correction | None = correction
        while current is not None:
            refused = False
            for event in current.cancel:
                store.record_cancel_requested(self.conn, event.identifier, self.clock())
                try:
                    self.api.cancel(state.key[3], event.identifier)
                except stripe.InvalidRequestError as exc:  # e.g. past the 24-hour window
                    store.clear_cancel_request(self.conn, event.identifier)
                    log.warning("stripe: cancel of %s refused: %s", event.identifier, exc)
                    tried.add(event.identifier)
                    refused = True
                    break
                store.record_cancelled(self.conn, event.identifier, self.clock())
                self.report.cancelled += 1
                state = replace(state, live=tuple(e for e in state.live if e is not event))
            if refused:
                current = plan_key(state, self.clock(), tried)
                continue
            self._credit(current)
            return current.send
        return None

    def _credit(self, c: Correction) -> None:
        if not c.credit_delta:
            return
        billed = sum(e.value for e in c.state.live) - c.state.credited
        if c.credit_delta > 0:
            reason = (f"billed {billed}, exact {c.state.exact}: past Stripe's 24-hour cancel"
                      " window, credit the difference by hand")
            self.report.credits_flagged += 1
            log.warning("stripe: %s needs a manual credit of %d", c.state.key, c.credit_delta)
        else:
            reason = f"grew back to {c.state.exact}"
            self.report.credits_withdrawn += 1
        store.change_credit(self.conn, c.state, c.credit_delta, reason, self.clock())

    def _call(self, events: Sequence[MeterEvent], channel: str,
              call: Callable[[], object]) -> None:
        """Record the intent, call, settle.

        An answer that proves nothing was recorded (429 after the retries, a bad key) drops
        the intent; any other failure leaves it for the next run to settle.
        """
        store.record_pending(self.conn, events, channel, self.clock())
        try:
            call()
        except (stripe.RateLimitError, stripe.AuthenticationError):
            store.drop_pending(self.conn, [e.identifier for e in events])
            raise
        store.mark_accepted(self.conn, [e.identifier for e in events])

    def send(self, events: Sequence[MeterEvent]) -> None:
        """One day's events: the v2 stream at or above the threshold, else v1 one by one."""
        stream = len(events) >= self.settings.stripe_stream_threshold
        size = STREAM_BATCH_MAX if stream else 1
        for i in range(0, len(events), size):
            batch = events[i:i + size]
            try:
                if stream:
                    self._call(batch, "v2", functools.partial(self.api.send_stream, batch))
                else:
                    self._call(batch, "v1", functools.partial(self.api.send, batch[0]))
            except stripe.AuthenticationError:
                raise
            except stripe.StripeError as exc:
                self.report.failed += len(batch)
                log.error("stripe: %d event(s) of %s not accepted: %s", len(batch),
                          batch[0].day, exc)
                continue
            self.report.sent += len(batch)
            self.report.streamed += len(batch) if stream else 0


def export_days(settings: BatchSettings, conn: psycopg.Connection, days: Sequence[date], *,
                api: StripeMeters | None = None, clock: Clock = lambda: datetime.now(UTC),
                dry_run_csv: Path | None = None) -> ExportReport:
    """Correct Stripe for ``days``.

    With ``dry_run_csv`` only write the events it would send, planned from the log alone
    (a dry run asks Stripe nothing).
    """
    report = ExportReport()
    with store.export_lock(conn):
        rows = store.usage_rows(conn, days)
        now = clock()
        usable: list[date] = []
        for day in sorted({r.day for r in rows}):
            try:
                check_day(day, now)
                usable.append(day)
            except DayOutOfRangeError as exc:
                report.refused.append(str(exc))
                log.error("stripe: %s", exc)
        rows = [r for r in rows if r.day in usable]
        report.unmapped_keys = len({(r.project_id, r.api_key) for r in rows
                                    if not r.stripe_customer_id})
        if dry_run_csv is not None:
            logs = store.log_by_key(conn, usable)
            states = key_states(rows, settings.stripe_meters, logs,
                                store.credits_by_key(conn, usable))
            plans = [c for s in states if (c := plan_key(s, now)) is not None]
            write_csv([c.send for c in plans if c.send is not None], dry_run_csv)
            report.planned = sum(c.send is not None for c in plans)
            return report
        if api is None:
            api = StripeMeters(settings, clock=clock)
        exporter = _Exporter(settings, conn, api, clock, report)
        try:
            exporter.settle_uncertain(usable)
            logs = store.log_by_key(conn, usable)
            states = key_states(rows, settings.stripe_meters, logs,
                                store.credits_by_key(conn, usable))
            _export(exporter, states, logs, usable)
        except stripe.AuthenticationError as exc:
            report.failed += 1
            log.error("stripe: authentication refused, export stopped: %s", exc)
        except stripe.StripeError as exc:  # e.g. a summary read failing: next run resumes
            report.failed += 1
            log.error("stripe: export stopped: %s", exc)
        report.rate_limited = api.rate_limited
    return report


def _export(exporter: _Exporter, states: list[KeyState],
            logs: Mapping[ExportKey, store.LogEntry], days: Sequence[date]) -> None:
    states = exporter.rebuild_lost_logs(states, logs)
    report, now = exporter.report, exporter.clock()
    for day in days:
        plans = [c for s in states if s.key[2] == day and (c := plan_key(s, now)) is not None]
        report.planned += sum(c.send is not None for c in plans)
        to_send: list[MeterEvent] = []
        for correction in plans:
            try:
                event = exporter.apply(correction)
            except stripe.AuthenticationError:
                raise
            except stripe.StripeError as exc:
                report.failed += 1
                log.error("stripe: correction of %s failed: %s", correction.state.key, exc)
                continue
            if event is not None:
                to_send.append(event)
        exporter.send(to_send)


def export_period(settings: BatchSettings, conn: psycopg.Connection, period: str, *,
                  dry_run_csv: Path | None = None, api: StripeMeters | None = None,
                  clock: Clock = lambda: datetime.now(UTC)) -> ExportReport:
    """Export a month's days (see ``export_days``)."""
    start, end = month_range(period)
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    return export_days(settings, conn, days, api=api, clock=clock, dry_run_csv=dry_run_csv)
