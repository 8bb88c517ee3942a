"""One evaluation round, and the loop of ``turnstile alerting``.

A round (1) measures every enabled rule, (2) records state changes and their events in
one transaction, then (3) sends every pending event and records the outcome. Events are
written before they are sent, so a crash between the two sends them on the next round
(at least once; PagerDuty's dedup key makes a repeated trigger harmless).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from alerting.decide import State, decide
from alerting.evaluate import measure
from alerting.notify import Notice, Notifier
from alerting.round_lock import try_round_lock
from alerting.rules import RULE_COLUMNS, Rule
from alerting.settings import AlertingSettings

log = logging.getLogger(__name__)

_STATES = """
SELECT rule_id, firing, since, last_notified_at FROM alert_state
WHERE rule_id = ANY(%s)"""

_UPSERT_STATE = """
INSERT INTO alert_state (rule_id, firing, value, since, evaluated_at, last_notified_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (rule_id) DO UPDATE SET firing = EXCLUDED.firing, value = EXCLUDED.value,
    since = EXCLUDED.since, evaluated_at = EXCLUDED.evaluated_at,
    last_notified_at = EXCLUDED.last_notified_at"""

_ADD_EVENT = """
INSERT INTO alert_events (rule_id, project_id, kind, value, threshold, window_start,
                          window_end, at, delivery)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"""

_PENDING = f"""
SELECT e.event_id, e.kind, e.value, e.window_start, e.window_end, e.at, e.attempts,
       {RULE_COLUMNS}
FROM alert_events e JOIN alert_rules r USING (rule_id)
WHERE e.delivery = 'pending'
ORDER BY e.event_id"""  # noqa: S608 - the columns are Rule's field names

_RECORD = """
UPDATE alert_events SET delivery = %s, attempts = attempts + %s, delivery_error = %s
WHERE event_id = %s"""


@dataclass(frozen=True, slots=True)
class RoundStats:
    rules: int
    events: int
    delivered: int
    failed: int
    skipped: bool = False  # another evaluator held the round lock


def evaluate(conn: psycopg.Connection[Any], now: datetime) -> tuple[int, int]:
    """Steps 1–2: (rules measured, events recorded)."""
    measured = measure(conn, now)
    events = 0
    with conn.transaction():
        states = {row[0]: State(row[1], row[2], row[3]) for row in conn.execute(
            _STATES, [[rule.rule_id for rule, _ in measured]]).fetchall()}
        for rule, window in measured:  # one step per rule
            state, event, value = decide(rule, window, states.get(rule.rule_id), now)
            conn.execute(_UPSERT_STATE, (rule.rule_id, state.firing, value, state.since, now,
                                         state.last_notified_at))
            if event is not None:
                events += 1
                conn.execute(_ADD_EVENT, (rule.rule_id, rule.project_id, event.kind,
                                          event.value, rule.threshold, window.start,
                                          window.end, now, event.delivery))
    return len(measured), events


def deliver(conn: psycopg.Connection[Any], notifier: Notifier,
            settings: AlertingSettings) -> tuple[int, int]:
    """Step 3: (delivered, failed for good)."""
    delivered = failed = 0
    budget = settings.attempts_per_round * settings.max_rounds
    for row in conn.execute(_PENDING).fetchall():
        event_id, kind, value, start, end, at, tried = row[:7]
        notice = Notice(event_id, Rule(*row[7:]), kind, value, start, end, at)
        outcome = notifier.send(notice)
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
    return delivered, failed


def run_round(settings: AlertingSettings, now: datetime | None = None,
              notifier: Notifier | None = None) -> RoundStats:
    own = notifier is None
    sender = notifier or Notifier(settings)
    try:
        with psycopg.connect(settings.database.dsn(), autocommit=True) as conn:
            if not try_round_lock(conn):
                log.info("alerting round skipped: another evaluator holds the round lock")
                return RoundStats(0, 0, 0, 0, skipped=True)
            rules, events = evaluate(conn, now or datetime.now(UTC))
            delivered, failed = deliver(conn, sender, settings)
    finally:
        if own:
            sender.close()
    return RoundStats(rules, events, delivered, failed)


def run_forever(settings: AlertingSettings) -> None:
    """A round every ``interval_s``; a failed round is logged and the next one runs."""
    notifier = Notifier(settings)
    try:
        while True:
            started = time.monotonic()
            try:
                stats = run_round(settings, notifier=notifier)
                log.info("alerting round: %d rule(s), %d event(s), %d delivered, %d failed",
                         stats.rules, stats.events, stats.delivered, stats.failed)
            except psycopg.Error:
                log.exception("alerting round failed; retrying at the next interval")
            time.sleep(max(0.0, settings.interval_s - (time.monotonic() - started)))
    finally:
        notifier.close()
