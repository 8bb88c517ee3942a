"""Stripe's rules for meter events, as data, and the checks the export makes against them.

Stripe Billing meter events (v1): about 1,000 calls/s in live mode, one concurrent call per
(customer, meter), ``identifier`` unique for at least 24 hours, timestamps within the past
35 days and at most 5 minutes ahead, whole-number values, cancellation only within 24
hours of receipt. The v2 meter event stream takes batches of up to 100 events, authorised
by a session token valid for 15 minutes. The export stamps a day's events at 00:00 UTC of
that day, so a day can be sent while its start is inside the 35-day window.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

TIMESTAMP_MAX_AGE = timedelta(days=35)
TIMESTAMP_MAX_AHEAD = timedelta(minutes=5)
IDENTIFIER_WINDOW = timedelta(hours=24)
CANCEL_WINDOW = timedelta(hours=24)
IDENTIFIER_MAX_LENGTH = 100
STREAM_BATCH_MAX = 100
STREAM_SESSION_TTL = timedelta(minutes=15)

# Our own margins: a cancel is attempted only this far inside the window (clock skew), a
# day only this far inside the 35 days (the run takes time), a session renewed this early.
CANCEL_MARGIN = timedelta(minutes=10)
AGE_MARGIN = timedelta(hours=1)
SESSION_RENEW_BEFORE = timedelta(seconds=60)


class DayOutOfRangeError(ValueError):
    """A day Stripe would refuse: its timestamp is outside the past 35 days (or ahead)."""


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_timestamp(day: date) -> int:
    """Meter events are stamped at the start of their UTC day."""
    return int(day_start(day).timestamp())


def oldest_sendable_day(now: datetime) -> date:
    """The oldest day whose 00:00 UTC is still inside Stripe's window (with our margin)."""
    limit = now - TIMESTAMP_MAX_AGE + AGE_MARGIN
    first = limit.astimezone(UTC).date()
    return first if day_start(first) >= limit else first + timedelta(days=1)


def check_day(day: date, now: datetime) -> None:
    """Raise ``DayOutOfRangeError`` naming the day and the limit when Stripe would refuse it."""
    oldest = oldest_sendable_day(now)
    if day < oldest:
        raise DayOutOfRangeError(
            f"{day}: older than Stripe's 35-day limit for meter event timestamps"
            f" (the oldest day that can be sent now is {oldest})")
    if day_start(day) > now + TIMESTAMP_MAX_AHEAD:
        raise DayOutOfRangeError(f"{day}: in the future; Stripe accepts timestamps at most"
                             " 5 minutes ahead")


def cancellable(sent_at: datetime, now: datetime) -> bool:
    """Whether an event sent at ``sent_at`` can still be cancelled (inside 24 h − margin)."""
    return now - sent_at < CANCEL_WINDOW - CANCEL_MARGIN
