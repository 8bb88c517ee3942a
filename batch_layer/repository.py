"""All SQL of the batch layer: tiers, billing_usage, reconciliation, Stripe customer mapping.

Writes of a day happen in one transaction that first deletes the day, so re-running a day
replaces it (keys that vanished disappear too) and readers never see half a day.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg

from batch_layer.billing import TierRule, UsageRow
from batch_layer.reconcile import Key, ReconciliationRow


def load_tiers(conn: psycopg.Connection) -> dict[str, list[TierRule]]:
    """Every project's ordered tier rules."""
    tiers: dict[str, list[TierRule]] = defaultdict(list)
    rows = conn.execute(
        "SELECT project_id, pattern, tier FROM billing_tiers ORDER BY project_id, position"
    ).fetchall()
    for project, pattern, tier in rows:
        tiers[project].append(TierRule(pattern=pattern, tier=tier))
    return dict(tiers)


def set_tiers(conn: psycopg.Connection, project_id: str, rules: Sequence[TierRule]) -> None:
    """Replace a project's tier rules (order = priority)."""
    with conn.transaction():
        conn.execute("DELETE FROM billing_tiers WHERE project_id = %s", (project_id,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO billing_tiers (project_id, position, pattern, tier)"
                " VALUES (%s, %s, %s, %s)",
                [(project_id, i, r.pattern, r.tier) for i, r in enumerate(rules)],
            )


def replace_billing_day(conn: psycopg.Connection, day: date, rows: Iterable[UsageRow]) -> int:
    """Replace all billing_usage rows of ``day``; returns the number written."""
    n = 0
    with conn.transaction():
        conn.execute("DELETE FROM billing_usage WHERE day = %s", (day,))
        with conn.cursor() as cur, cur.copy(
            "COPY billing_usage (project_id, api_key, day, total_requests, requests_by_tier,"
            " error_count, server_error_count, bytes_in, bytes_out, computed_at)"
            " FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row((r.project_id, r.api_key, day, r.total_requests,
                                json.dumps(r.requests_by_tier, sort_keys=True), r.error_count,
                                r.server_error_count, r.bytes_in, r.bytes_out, "now"))
                n += 1
    return n


def _day_range(day: date) -> tuple[date, date]:
    return day, day + timedelta(days=1)


def stream_counts(conn: psycopg.Connection, day: date) -> dict[Key, int]:
    """What the speed layer counted per (project, api_key) for the day (UTC)."""
    start, end = _day_range(day)
    rows = conn.execute(
        "SELECT project_id, api_key, sum(request_count)::bigint FROM metrics_1m"
        " WHERE bucket >= %s::timestamptz AND bucket < %s::timestamptz"
        " GROUP BY project_id, api_key",
        (f"{start.isoformat()}T00:00:00Z", f"{end.isoformat()}T00:00:00Z"),
    ).fetchall()
    return {(p, k): int(n) for p, k, n in rows}


def late_counts(conn: psycopg.Connection, day: date) -> dict[Key, int]:
    """Events the speed layer saw later than its lateness, per key, for the day."""
    exists = conn.execute("SELECT to_regclass('late_events') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    start, end = _day_range(day)
    rows = conn.execute(
        "SELECT project_id, api_key, sum(event_count)::bigint FROM late_events"
        " WHERE bucket >= %s::timestamptz AND bucket < %s::timestamptz"
        " GROUP BY project_id, api_key",
        (f"{start.isoformat()}T00:00:00Z", f"{end.isoformat()}T00:00:00Z"),
    ).fetchall()
    return {(p, k): int(n) for p, k, n in rows}


def replace_reconciliation_day(conn: psycopg.Connection, day: date,
                               rows: Iterable[ReconciliationRow]) -> int:
    n = 0
    with conn.transaction():
        conn.execute("DELETE FROM reconciliation WHERE day = %s", (day,))
        with conn.cursor() as cur, cur.copy(
            "COPY reconciliation (project_id, api_key, day, batch_count, stream_count,"
            " difference, late_beyond_lateness, duplicates_removed, duplicates_in_stream,"
            " unexplained, status, computed_at) FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row((r.project_id, r.api_key, day, r.batch_count, r.stream_count,
                                r.difference, r.late_beyond_lateness, r.duplicates_removed,
                                r.duplicates_in_stream, r.unexplained, r.status, "now"))
                n += 1
    return n


# --- Stripe ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BilledDay:
    """A billing_usage row and its Stripe customer ('' when unmapped), for the export."""

    project_id: str
    api_key: str
    day: date
    stripe_customer_id: str
    total_requests: int
    requests_by_tier: dict[str, int]
    error_count: int
    server_error_count: int
    bytes_in: int
    bytes_out: int


def map_customer(conn: psycopg.Connection, project_id: str, api_key: str,
                 stripe_customer_id: str) -> None:
    conn.execute(
        "INSERT INTO stripe_customers (project_id, api_key, stripe_customer_id)"
        " VALUES (%s, %s, %s) ON CONFLICT (project_id, api_key)"
        " DO UPDATE SET stripe_customer_id = EXCLUDED.stripe_customer_id",
        (project_id, api_key, stripe_customer_id),
    )


def consumer_billed(conn: psycopg.Connection, project_id: str, api_key: str) -> bool:
    """Whether any billed day holds this consumer (to tell a user a mapping may be wrong)."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM billing_usage"
                       " WHERE project_id = %s AND api_key = %s)", (project_id, api_key)).fetchone()
    return bool(row and row[0])


ExportKey = tuple[str, str, date, str]

