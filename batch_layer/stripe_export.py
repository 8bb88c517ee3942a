"""Stripe usage export: one meter event per (api_key, day, meter), never billed twice.

The events to send are planned from billing_usage and the log of what Stripe already
accepted (``stripe_meter_exports``): nothing when a day's value was already sent, the
positive difference (as a new revision) when a re-run day grew. Each event's
``identifier`` and Idempotency-Key are a hash of (project, api_key, day, meter, revision),
so a crash between Stripe's answer and our log insert re-sends an identical request,
which Stripe deduplicates.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import stripe

from batch_layer import repository
from batch_layer.repository import BilledDay, ExportKey
from batch_layer.settings import BatchSettings

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class ExportReport:
    planned: int
    sent: int
    failed: int
    skipped_decreases: int
    unmapped_keys: int


def month_range(period: str) -> tuple[date, date]:
    """``YYYY-MM`` → [first day, first day of the next month)."""
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC).date()
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, end


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


def day_timestamp(day: date) -> int:
    """Meter events are stamped at the start of their UTC day."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def plan_events(rows: Sequence[BilledDay], meters: Mapping[str, str],
                exported: Mapping[ExportKey, tuple[int, int]]) -> tuple[list[MeterEvent], int]:
    """Events still owed to Stripe, and how many (key, meter) values shrank (not sent)."""
    events: list[MeterEvent] = []
    decreases = 0
    for row in rows:
        for event_name, source in sorted(meters.items()):
            key: ExportKey = (row.project_id, row.api_key, row.day, event_name)
            revisions, sent = exported.get(key, (0, 0))
            delta = meter_value(row, source) - sent
            if delta < 0:
                decreases += 1
                log.warning("stripe: %s shrank by %d after export; not sent", key, -delta)
            if delta <= 0:
                continue
            revision = revisions + 1
            events.append(MeterEvent(
                identifier=event_identifier(key, revision), event_name=event_name,
                stripe_customer_id=row.stripe_customer_id, value=delta,
                timestamp=day_timestamp(row.day), project_id=row.project_id,
                api_key=row.api_key, day=row.day, revision=revision,
            ))
    return events, decreases


def write_csv(events: Sequence[MeterEvent], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(MeterEvent.__dataclass_fields__)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for event in events:
            writer.writerow(asdict(event))


def stripe_client(settings: BatchSettings) -> stripe.StripeClient:
    if settings.stripe_api_key is None:
        raise ValueError("TURNSTILE_BATCH_STRIPE_API_KEY is not set (or use --dry-run)")
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=settings.stripe_max_network_retries,
    )


def send(client: stripe.StripeClient, conn: psycopg.Connection, event: MeterEvent) -> None:
    """Send one event; record it only once Stripe accepted it."""
    client.v1.billing.meter_events.create(
        params={
            "event_name": event.event_name,
            "payload": {"stripe_customer_id": event.stripe_customer_id,
                        "value": str(event.value)},
            "identifier": event.identifier,
            "timestamp": event.timestamp,
        },
        options={"idempotency_key": event.identifier},
    )
    repository.record_export(conn, event.identifier,
                             (event.project_id, event.api_key, event.day, event.event_name),
                             event.revision, event.value, event.stripe_customer_id)


def export_period(settings: BatchSettings, conn: psycopg.Connection, period: str, *,
                  dry_run_csv: Path | None = None) -> ExportReport:
    """Export a month's days; with ``dry_run_csv`` only write the planned events there."""
    start, end = month_range(period)
    rows = repository.billed_days(conn, start, end)
    unmapped = repository.unmapped_keys(conn, start, end)
    if unmapped:
        log.warning("stripe: %d consumers have usage but no Stripe customer", len(unmapped))
    events, decreases = plan_events(rows, settings.stripe_meters,
                                    repository.exported_so_far(conn, start, end))
    if dry_run_csv is not None:
        write_csv(events, dry_run_csv)
        return ExportReport(len(events), 0, 0, decreases, len(unmapped))
    client = stripe_client(settings)
    sent = failed = 0
    for event in events:
        try:
            send(client, conn, event)
            sent += 1
        except stripe.StripeError as exc:
            failed += 1
            log.error("stripe: %s for %s rejected: %s", event.event_name, event.identifier, exc)
    return ExportReport(len(events), sent, failed, decreases, len(unmapped))
