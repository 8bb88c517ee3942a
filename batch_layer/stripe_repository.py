"""All SQL of the Stripe export: the export log, credits, and the one-exporter lock.

A send is written as a pending intent before the call and settled after Stripe's answer;
a cancellation likewise (``cancel_requested_at`` → ``cancelled_at``). So after a crash or
a timeout the log knows exactly which calls are uncertain, and what they carried.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg

from batch_layer.repository import BilledDay, ExportKey
from batch_layer.stripe_plan import KeyState, LoggedEvent, MeterEvent
from batch_layer.stripe_rules import day_timestamp

EXPORT_LOCK = 0x7475_726E_7374_6C01  # one exporter at a time (pg advisory lock id)


@contextmanager
def export_lock(conn: psycopg.Connection) -> Iterator[None]:
    """Serialise exporters: two at once would plan from the same log and race."""
    conn.execute("SELECT pg_advisory_lock(%s)", (EXPORT_LOCK,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (EXPORT_LOCK,))


def usage_rows(conn: psycopg.Connection, days: Sequence[date]) -> list[BilledDay]:
    """Every billing_usage row of ``days``; unmapped consumers have customer ''."""
    rows = conn.execute(
        "SELECT b.project_id, b.api_key, b.day, coalesce(c.stripe_customer_id, ''),"
        " b.total_requests, b.requests_by_tier, b.error_count, b.server_error_count,"
        " b.bytes_in, b.bytes_out FROM billing_usage b"
        " LEFT JOIN stripe_customers c USING (project_id, api_key)"
        " WHERE b.day = ANY(%s) ORDER BY b.project_id, b.api_key, b.day",
        (list(days),),
    ).fetchall()
    return [BilledDay(p, k, d, c, int(t), {str(a): int(b) for a, b in tiers.items()},
                      int(e), int(se), int(bi), int(bo))
            for p, k, d, c, t, tiers, e, se, bi, bo in rows]


@dataclass
class LogEntry:
    """The log of one key: live events, the last revision used, the last customer."""

    live: list[LoggedEvent]
    last_revision: int = 0
    customer: str = ""
    any_rows: bool = False


def log_by_key(conn: psycopg.Connection, days: Sequence[date]) -> dict[ExportKey, LogEntry]:
    """The export log of ``days``, per (project, api_key, day, meter)."""
    out: dict[ExportKey, LogEntry] = defaultdict(lambda: LogEntry([]))
    rows = conn.execute(
        "SELECT project_id, api_key, day, event_name, identifier, revision, value, sent_at,"
        " channel, cancelled_at IS NOT NULL OR pending, stripe_customer_id"
        " FROM stripe_meter_exports WHERE day = ANY(%s) ORDER BY revision",
        (list(days),),
    ).fetchall()
    for p, k, d, e, ident, rev, value, sent_at, channel, not_live, customer in rows:
        entry = out[(p, k, d, e)]
        entry.any_rows = True
        entry.last_revision = max(entry.last_revision, int(rev))
        entry.customer = customer
        if not not_live:
            entry.live.append(LoggedEvent(ident, int(rev), int(value), sent_at, channel))
    return dict(out)


@dataclass(frozen=True)
class Uncertain:
    """A send (pending) or a cancel (requested) whose answer was never recorded."""

    event: MeterEvent
    channel: str
    sent_at: datetime
    cancel: bool


def uncertain(conn: psycopg.Connection, days: Sequence[date]) -> list[Uncertain]:
    rows = conn.execute(
        "SELECT identifier, event_name, stripe_customer_id, value, project_id, api_key, day,"
        " revision, channel, sent_at, NOT pending FROM stripe_meter_exports"
        " WHERE day = ANY(%s) AND (pending OR (cancel_requested_at IS NOT NULL"
        " AND cancelled_at IS NULL)) ORDER BY day, stripe_customer_id, event_name, revision",
        (list(days),),
    ).fetchall()
    return [Uncertain(MeterEvent(i, e, c, int(v), day_timestamp(d), p, k, d, int(r)), ch, at,
                      cancel)
            for i, e, c, v, p, k, d, r, ch, at, cancel in rows]


def settled_value(conn: psycopg.Connection, customer: str, event_name: str, day: date) -> int:
    """What the log says Stripe bills a customer for a meter and day, uncertain rows aside."""
    row = conn.execute(
        "SELECT coalesce(sum(value), 0)::bigint FROM stripe_meter_exports"
        " WHERE stripe_customer_id = %s AND event_name = %s AND day = %s AND NOT pending"
        " AND cancelled_at IS NULL AND cancel_requested_at IS NULL",
        (customer, event_name, day)).fetchone()
    return int(row[0]) if row else 0


def record_pending(conn: psycopg.Connection, events: Sequence[MeterEvent], channel: str,
                   sent_at: datetime) -> None:
    """The intent, written before the call (a replayed intent is left as it was)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO stripe_meter_exports (identifier, project_id, api_key, day,"
            " event_name, revision, value, stripe_customer_id, sent_at, channel, pending)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true)"
            " ON CONFLICT (identifier) DO NOTHING",
            [(e.identifier, e.project_id, e.api_key, e.day, e.event_name, e.revision, e.value,
              e.stripe_customer_id, sent_at, channel) for e in events],
        )


def mark_accepted(conn: psycopg.Connection, identifiers: Sequence[str]) -> None:
    conn.execute("UPDATE stripe_meter_exports SET pending = false, exported_at = now()"
                 " WHERE identifier = ANY(%s)", (list(identifiers),))


def drop_pending(conn: psycopg.Connection, identifiers: Sequence[str]) -> None:
    """Stripe certainly did not record these (refused before accepting anything)."""
    conn.execute("DELETE FROM stripe_meter_exports WHERE identifier = ANY(%s) AND pending",
                 (list(identifiers),))


def record_cancel_requested(conn: psycopg.Connection, identifier: str, at: datetime) -> None:
    conn.execute("UPDATE stripe_meter_exports SET cancel_requested_at = %s"
                 " WHERE identifier = %s", (at, identifier))


def clear_cancel_request(conn: psycopg.Connection, identifier: str) -> None:
    conn.execute("UPDATE stripe_meter_exports SET cancel_requested_at = NULL"
                 " WHERE identifier = %s AND cancelled_at IS NULL", (identifier,))


def credits_by_key(conn: psycopg.Connection, days: Sequence[date]
                   ) -> dict[ExportKey, tuple[int, int]]:
    """(credited, open) credit amounts per key."""
    rows = conn.execute(
        "SELECT project_id, api_key, day, event_name,"
        " coalesce(sum(amount) FILTER (WHERE status = 'credited'), 0)::bigint,"
        " coalesce(sum(amount) FILTER (WHERE status = 'open'), 0)::bigint"
        " FROM stripe_credits WHERE day = ANY(%s) GROUP BY 1, 2, 3, 4",
        (list(days),),
    ).fetchall()
    return {(p, k, d, e): (int(c), int(o)) for p, k, d, e, c, o in rows}


def record_sent(conn: psycopg.Connection, events: Sequence[MeterEvent], channel: str,
                sent_at: datetime) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO stripe_meter_exports (identifier, project_id, api_key, day,"
            " event_name, revision, value, stripe_customer_id, sent_at, channel)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (identifier) DO NOTHING",
            [(e.identifier, e.project_id, e.api_key, e.day, e.event_name, e.revision, e.value,
              e.stripe_customer_id, sent_at, channel) for e in events],
        )


def record_cancelled(conn: psycopg.Connection, identifier: str, at: datetime) -> None:
    conn.execute("UPDATE stripe_meter_exports SET cancelled_at = %s"
                 " WHERE identifier = %s AND cancelled_at IS NULL", (at, identifier))


def change_credit(conn: psycopg.Connection, state: KeyState, delta: int, reason: str,
                  at: datetime) -> None:
    """Flag more (delta > 0) or withdraw (delta < 0) of the key's open credit."""
    project_id, api_key, day, event_name = state.key
    billed = sum(e.value for e in state.live) - state.credited
    with conn.transaction():
        row = conn.execute(
            "SELECT credit_id, amount FROM stripe_credits WHERE project_id = %s"
            " AND api_key = %s AND day = %s AND event_name = %s AND status = 'open'"
            " FOR UPDATE", (project_id, api_key, day, event_name)).fetchone()
        if row is None:
            if delta > 0:
                conn.execute(
                    "INSERT INTO stripe_credits (project_id, api_key, day, event_name,"
                    " stripe_customer_id, amount, billed, exact, reason, flagged_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (project_id, api_key, day, event_name, state.stripe_customer_id, delta,
                     billed, state.exact, reason, at))
            return
        credit_id, amount = row
        left = int(amount) + delta
        if left > 0:
            conn.execute("UPDATE stripe_credits SET amount = %s, billed = %s, exact = %s,"
                         " reason = %s WHERE credit_id = %s",
                         (left, billed, state.exact, reason, credit_id))
        else:  # the day grew back: nothing to credit any more (amount kept as flagged)
            conn.execute("UPDATE stripe_credits SET status = 'withdrawn', resolved_at = %s,"
                         " billed = %s, exact = %s WHERE credit_id = %s",
                         (at, billed, state.exact, credit_id))


def list_credits(conn: psycopg.Connection, status: str | None = "open") -> list[dict[str, Any]]:
    """Credits, newest first; ``status`` None lists every state."""
    rows = conn.execute(
        "SELECT credit_id, project_id, api_key, day, event_name, stripe_customer_id, amount,"
        " billed, exact, status, reason, flagged_at, resolved_at FROM stripe_credits"
        " WHERE %s::text IS NULL OR status = %s ORDER BY flagged_at DESC, credit_id DESC",
        (status, status),
    ).fetchall()
    names = ("credit_id", "project_id", "api_key", "day", "event_name", "stripe_customer_id",
             "amount", "billed", "exact", "status", "reason", "flagged_at", "resolved_at")
    return [dict(zip(names, row, strict=True)) for row in rows]


def mark_credited(conn: psycopg.Connection, credit_id: int) -> bool:
    """A person issued the credit in Stripe; returns False when no open credit has that id."""
    row = conn.execute("UPDATE stripe_credits SET status = 'credited', resolved_at = now()"
                       " WHERE credit_id = %s AND status = 'open' RETURNING credit_id",
                       (credit_id,)).fetchone()
    return row is not None


def credits_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, default=str, indent=2)
