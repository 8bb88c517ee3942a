"""One evaluation round, and the loop of ``turnstile alerting``.

A round (1) measures every enabled rule, (2) records state changes and their events in
one transaction, then (3) sends every pending event and records the outcome. Events are
written before they are sent, so a crash between the two sends them on the next round
(at least once; PagerDuty's dedup key makes a repeated trigger harmless).

Step 2 is pure Python per rule member (``assess``, ``decide``) and two statements: every
member's state and every event, each written as arrays in one statement.

One bad rule never stops the others: a rule that cannot be measured, decided or
recorded (when the round's write fails, it is redone rule by rule, each in its own
savepoint), or whose notification cannot even be
attempted, is set aside as a dead letter (component ``alerting``, one per rule, kind
and day) and the round goes on. A round that fails as a whole (PostgreSQL gone) is logged
in one line and retried with capped backoff, then at the normal interval again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

from alerting.assess import assess, empty_window
from alerting.decide import State, decide
from alerting.evaluate import Measured, measure_each, window_end
from alerting.notify import Notice, Notifier, Outcome
from alerting.round_lock import try_round_lock
from alerting.rules import RULE_COLUMNS, Rule
from alerting.settings import AlertingSettings
from schemas.consumer_ops import ERRORS, EVENTS_IN, EVENTS_OUT, ComponentOps, no_ops
from schemas.dead_letters import DeadLetter, record_dead_letters
from schemas.retry import Backoff, pg_unreachable, retry_line

log = logging.getLogger(__name__)

COMPONENT: Final = "alerting"

_STATES = """
SELECT rule_id, member, firing, since, last_notified_at FROM alert_state
WHERE rule_id = ANY(%s)"""

# Every member's state and every event of a round, each in one statement.
_UPSERT_STATES = """
INSERT INTO alert_state (rule_id, member, firing, value, since, evaluated_at, last_notified_at)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::boolean[], %s::float8[],
                     %s::timestamptz[], %s::timestamptz[], %s::timestamptz[])
ON CONFLICT (rule_id, member) DO UPDATE SET firing = EXCLUDED.firing, value = EXCLUDED.value,
    since = EXCLUDED.since, evaluated_at = EXCLUDED.evaluated_at,
    last_notified_at = EXCLUDED.last_notified_at"""

_ADD_EVENTS = """
INSERT INTO alert_events (rule_id, project_id, kind, value, threshold, window_start,
                          window_end, at, delivery, member, detail)
SELECT rule_id, project_id, kind, value, threshold, window_start, window_end, at, delivery,
       member, detail::jsonb
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::float8[], %s::float8[],
            %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[],
            %s::text[]) AS e (rule_id, project_id, kind, value, threshold, window_start,
                              window_end, at, delivery, member, detail)"""

_PENDING = f"""
SELECT e.event_id, e.kind, e.value, e.window_start, e.window_end, e.at, e.attempts,
       e.member, e.detail, {RULE_COLUMNS}
FROM alert_events e JOIN alert_rules r USING (rule_id)
WHERE e.delivery = 'pending' AND r.enabled
ORDER BY e.event_id"""  # noqa: S608 - the columns are Rule's field names

# A rule disabled between a firing and its delivery: the user asked for silence, so the
# notice is recorded as suppressed (with why), never sent later if the rule comes back.
_DISABLED = """
UPDATE alert_events e SET delivery = 'suppressed', delivery_error = 'rule disabled before delivery'
FROM alert_rules r
WHERE e.rule_id = r.rule_id AND e.delivery = 'pending' AND NOT r.enabled"""

_RECORD = """
UPDATE alert_events SET delivery = %s, attempts = attempts + %s, delivery_error = %s
WHERE event_id = %s"""


@dataclass(frozen=True, slots=True)
class RoundStats:
    rules: int
    events: int
    delivered: int
    failed: int
    dead_letters: int = 0
    skipped: bool = False  # another evaluator held the round lock
    members: int = 0  # states kept: one per rule, one per member of a fan-out rule
    queries: int = 0  # SQL statements of the evaluation (steps 1-2)


@dataclass
class _SetAside:
    """Rules of this round that could not be handled, as dead letters."""

    letters: list[DeadLetter] = field(default_factory=list)

    def add(self, rule: Rule | None, rule_id: int, kind: str, exc: BaseException,
            now: datetime) -> None:
        reason = f"{kind}: {type(exc).__name__}: {exc}"
        log.error("alert rule %d set aside (%s)", rule_id, reason[:300])
        ERRORS.labels(COMPONENT, kind).inc()
        # One row per rule, kind and day: a rule broken for hours is not a row a minute.
        self.letters.append(DeadLetter(
            component=COMPONENT, reason=reason, kind=kind,
            project_id=rule.project_id if rule is not None else None,
            event_id=f"rule {rule_id} {kind} {now.date().isoformat()}"))


@dataclass
class _Round:
    """What step 2 writes: every member's new state and the events, as columns."""

    states: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def extend(self, other: _Round) -> None:
        self.states += other.states
        self.events += other.events


def _decide_rule(rule: Rule, members: set[str], measured: Measured,
                 states: dict[tuple[int, str], State], now: datetime) -> _Round:
    """One rule's members assessed and decided (pure; raises on a bug in its data)."""
    out = _Round()
    end = window_end(now)
    empty = empty_window(end - timedelta(minutes=rule.window_minutes), end)
    for member in sorted(members):
        key = (rule.rule_id, member)
        windows = measured.windows.get(key, {})
        verdict = assess(rule, windows.get("now", empty), before=windows.get("before"),
                         week_ago=windows.get("week_ago"), baseline=measured.baselines.get(key),
                         quota=measured.quotas.get(key), now=now)
        state, event = decide(rule, verdict, states.get(key), now)
        out.states.append((rule.rule_id, member, state.firing, verdict.value, state.since, now,
                           state.last_notified_at))
        if event is not None:
            out.events.append((rule.rule_id, rule.project_id, event.kind, event.value,
                               rule.threshold, verdict.window_start, verdict.window_end, now,
                               event.delivery, member,
                               json.dumps(verdict.detail, default=str)))
    return out


def _write(conn: psycopg.Connection[Any], changes: _Round) -> None:
    conn.execute(_UPSERT_STATES, [list(col) for col in zip(*changes.states, strict=True)]
                 if changes.states else [[]] * 7)
    if changes.events:
        conn.execute(_ADD_EVENTS, [list(col) for col in zip(*changes.events, strict=True)])


@dataclass(frozen=True, slots=True)
class Evaluated:
    """What steps 1–2 did."""

    rules: int
    events: int
    members: int  # member states written
    queries: int  # SQL statements
    seconds: dict[str, float]  # per measuring query, and the write


def evaluate(conn: psycopg.Connection[Any], now: datetime,
             aside: _SetAside | None = None) -> Evaluated:
    """Steps 1–2: measure, decide, record."""
    aside = aside if aside is not None else _SetAside()
    measured, unmeasured = measure_each(conn, now)
    for rule_id, exc in unmeasured:
        aside.add(None, rule_id, "unmeasurable", exc, now)
    members = measured.member_index()
    per_rule: dict[int, _Round] = {}
    with conn.transaction():
        states: dict[tuple[int, str], State] = {}
        for rid, member, firing, since, last in conn.execute(
                _STATES, [list(measured.rules)]).fetchall():
            states[(rid, member)] = State(firing, since, last)
            if firing:  # a firing member that left the data resolves (or stays, if empty)
                members.setdefault(rid, set()).add(member)
        for rule in measured.rules.values():  # one step per rule member, no SQL
            mine = members.get(rule.rule_id, set())
            if rule.scope == "rule":
                mine = mine | {""}
            try:
                per_rule[rule.rule_id] = _decide_rule(rule, mine, measured, states, now)
            except (ArithmeticError, KeyError, TypeError, ValueError) as exc:
                aside.add(rule, rule.rule_id, "unevaluable", exc, now)
        everything = _Round()
        for changes in per_rule.values():
            everything.extend(changes)
        started = time.perf_counter()
        try:
            with conn.transaction():
                _write(conn, everything)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            log.warning("recording the round at once failed (%s); rule by rule",
                        str(exc).strip().splitlines()[0])
            for rid, changes in per_rule.items():  # a savepoint per rule (the rare path)
                try:
                    with conn.transaction():
                        _write(conn, changes)
                except (psycopg.DataError, psycopg.IntegrityError) as one:
                    aside.add(measured.rules[rid], rid, "unevaluable", one, now)
                    changes.events.clear()
            everything = _Round()
            for changes in per_rule.values():
                everything.extend(changes)
    seconds = {**measured.seconds, "write": time.perf_counter() - started}
    EVENTS_IN.labels(COMPONENT).inc(len(measured.rules))
    return Evaluated(len(measured.rules), len(everything.events), len(everything.states),
                     measured.queries + 3, seconds)


def deliver(conn: psycopg.Connection[Any], notifier: Notifier,
            settings: AlertingSettings, aside: _SetAside | None = None) -> tuple[int, int]:
    """Step 3: (delivered, failed for good)."""
    aside = aside if aside is not None else _SetAside()
    delivered = failed = 0
    budget = settings.attempts_per_round * settings.max_rounds
    conn.execute(_DISABLED)
    for row in conn.execute(_PENDING).fetchall():
        event_id, kind, value, start, end, at, tried, member, detail = row[:9]
        notice = Notice(event_id, Rule(*row[9:]), kind, value, start, end, at, member, detail)
        try:
            outcome = notifier.send(notice)
        except Exception as exc:  # noqa: BLE001 - e.g. a target httpx cannot parse
            aside.add(notice.rule, notice.rule.rule_id, "undeliverable", exc, at)
            outcome = Outcome(False, 1, f"{type(exc).__name__}: {exc}"[:500], permanent=True)
        if outcome.delivered:
            status = "delivered"
            delivered += 1
        elif outcome.permanent or tried + outcome.attempts >= budget:
            status = "failed"
            failed += 1
            log.error("alert event %d could not be delivered: %s", event_id, outcome.error)
        else:
            status = "pending"
            log.warning("alert event %d not delivered yet: %s", event_id, outcome.error)
        with conn.transaction():
            conn.execute(_RECORD, (status, outcome.attempts, outcome.error, event_id))
    EVENTS_OUT.labels(COMPONENT).inc(delivered)
    return delivered, failed


def run_round(settings: AlertingSettings, now: datetime | None = None,
              notifier: Notifier | None = None) -> RoundStats:
    own = notifier is None
    sender = notifier or Notifier(settings)
    aside = _SetAside()
    try:
        with psycopg.connect(settings.database.dsn(), autocommit=True,
                             connect_timeout=5) as conn:
            if not try_round_lock(conn):
                log.info("alerting round skipped: another evaluator holds the round lock")
                return RoundStats(0, 0, 0, 0, skipped=True)
            done = evaluate(conn, now or datetime.now(UTC), aside)
            delivered, failed = deliver(conn, sender, settings, aside)
            if aside.letters:
                with conn.transaction():
                    record_dead_letters(conn, aside.letters)
    finally:
        if own:
            sender.close()
    return RoundStats(done.rules, done.events, delivered, failed, len(aside.letters),
                      members=done.members, queries=done.queries)


def run_forever(settings: AlertingSettings, *, ops: ComponentOps | None = None,
                stop: threading.Event | None = None) -> None:
    """A round every ``interval_s`` until ``stop`` is set.

    A failed round is logged in one line and retried with capped backoff (never later
    than the normal interval); readiness is false until a round succeeds again.
    """
    ops = ops or no_ops(COMPONENT)
    stop = stop or threading.Event()
    backoff = Backoff(cap=min(30.0, settings.interval_s))
    dsn = settings.database.dsn()
    notifier = Notifier(settings)
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                stats = run_round(settings, notifier=notifier)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any round
                ERRORS.labels(COMPONENT, "round").inc()
                if isinstance(exc, psycopg.OperationalError):
                    problem = f"alerting round failed: {pg_unreachable(dsn, exc)}"
                    ops.dependency_failed("postgres")
                else:
                    problem = f"alerting round failed: {type(exc).__name__}: {exc}"[:500]
                delay = backoff.next_delay()
                log.warning(retry_line(problem, delay))
                stop.wait(delay)
                continue
            backoff.reset()
            ops.dependency_ok("postgres")
            ops.success()
            log.info("alerting round: %d rule(s), %d event(s), %d delivered, %d failed, "
                     "%d set aside", stats.rules, stats.events, stats.delivered, stats.failed,
                     stats.dead_letters)
            stop.wait(max(0.0, settings.interval_s - (time.monotonic() - started)))
    finally:
        notifier.close()
