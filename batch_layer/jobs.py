"""The nightly job for one day: lake → exact usage → billing_usage → reconciliation.

Wires the pure parts (billing, reconcile) to the lake and PostgreSQL; the CLI and the
scheduler call ``run_day`` and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from batch_layer import repository
from batch_layer.billing import RefusedRow, compute_usage, connect, refused_rows, register_day
from batch_layer.lake import Lake
from batch_layer.reconcile import reconcile, settles_at
from batch_layer.settings import BatchSettings
from schemas.consumer_ops import EVENTS_IN, EVENTS_OUT
from schemas.dead_letters import DeadLetter, record_dead_letters
from schemas.storable import NUL_PROBLEM

COMPONENT = "billing"

if TYPE_CHECKING:
    from batch_layer.stripe_export import ExportReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayResult:
    """What one run of a day did, for logs and the CLI."""

    day: date
    files: int
    usage_rows: int
    total_requests: int
    duplicates_removed: int
    reconciliation_rows: int
    unexplained_keys: int
    seconds: float
    dead_letters: int = 0
    pending_keys: int = 0  # differences on a day still open (final after ``settles_at``)
    settles_at: datetime | None = None


def run_day(settings: BatchSettings, lake: Lake, conn: psycopg.Connection, day: date,
            now: datetime | None = None) -> DayResult:
    """Compute and store ``day``; safe to re-run (it replaces the day's rows)."""
    started = time.perf_counter()
    settled = settles_at(day, settings.roll_seconds)
    open_day = (now or datetime.now(UTC)) < settled
    tiers = repository.load_tiers(conn)
    con = connect(settings.duckdb_threads, settings.duckdb_memory_limit)
    try:
        files = register_day(con, lake, day)
        refused = refused_rows(con)
        usage = compute_usage(con, day, tiers, settings.default_tier)
        (events_read,) = con.execute("SELECT count(*) FROM lake_events").fetchone() or (0,)
    finally:
        con.close()
    EVENTS_IN.labels(COMPONENT).inc(int(events_read))
    if refused:
        letters = [_letter(r, settings.kafka.events_topic, day) for r in refused]
        log.error("billing %s: %d lake row(s) with keys PostgreSQL cannot store were left out "
                  "and dead-lettered; the other keys are billed", day, len(letters))
        with conn.transaction():
            record_dead_letters(conn, letters)
    repository.replace_billing_day(conn, day, usage)
    rows = reconcile(day, usage, repository.stream_counts(conn, day),
                     repository.late_counts(conn, day), open_day=open_day)
    repository.replace_reconciliation_day(conn, day, rows)
    result = DayResult(
        day=day, files=files, usage_rows=len(usage),
        total_requests=sum(u.total_requests for u in usage),
        duplicates_removed=sum(u.duplicates_removed for u in usage),
        reconciliation_rows=len(rows),
        unexplained_keys=sum(1 for r in rows if r.status == "unexplained"),
        seconds=time.perf_counter() - started,
        dead_letters=len(refused),
        pending_keys=sum(1 for r in rows if r.status == "pending"),
        settles_at=settled if open_day else None,
    )
    EVENTS_OUT.labels(COMPONENT).inc(len(usage))
    log.info("billing %s: %s", day, result)
    if result.unexplained_keys:
        log.warning("billing %s: %d keys with unexplained stream/batch differences",
                    day, result.unexplained_keys)
    return result


def _letter(row: RefusedRow, topic: str, day: date) -> DeadLetter:
    return DeadLetter(
        component=COMPONENT, kind="unstorable",
        reason=f"{row.field}: {NUL_PROBLEM} (billing_usage of {day} left it out)",
        project_id=row.project_id, topic=topic, partition=row.kafka_partition,
        offset=row.kafka_offset, event_id=row.event_id)


def export_after_billing(settings: BatchSettings, conn: psycopg.Connection,
                         days: Sequence[date], **export_options: Any) -> ExportReport | None:
    """The billing scheduler's Stripe hook: export the days it just billed, if enabled.

    On when ``TURNSTILE_BATCH_STRIPE_EXPORT_AFTER_BILLING`` is set. A missing key is logged
    and the export skipped, so billing itself never stops for it.
    """
    if not settings.stripe_export_after_billing:
        return None
    if settings.stripe_api_key is None:
        log.error("stripe export after billing is on but TURNSTILE_BATCH_STRIPE_API_KEY is"
                  " not set: skipped")
        return None
    from batch_layer.stripe_export import export_days

    report = export_days(settings, conn, days, **export_options)
    log.info("stripe export of %s: %s", ", ".join(map(str, days)), report)
    return report
