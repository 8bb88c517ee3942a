from datetime import UTC, date, datetime, timedelta

import pytest

from batch_layer.stripe_rules import DayOutOfRangeError, cancellable, check_day, oldest_sendable_day

NOW = datetime(2026, 12, 2, 4, 30, tzinfo=UTC)


def test_days_inside_35_days_pass_and_older_ones_are_refused_naming_day_and_limit():
    oldest = oldest_sendable_day(NOW)
    assert oldest == date(2026, 10, 29)  # 2026-10-28 00:00 is 35 d 4.5 h ago
    check_day(oldest, NOW)
    check_day(date(2026, 12, 1), NOW)
    with pytest.raises(DayOutOfRangeError) as info:
        check_day(date(2026, 10, 28), NOW)
    assert "2026-10-28" in str(info.value) and "35-day" in str(info.value)
    assert "2026-10-29" in str(info.value)


def test_the_age_margin_keeps_a_day_out_that_would_expire_during_the_run():
    # 2026-10-28 00:00 is 35 days before 2026-12-02 00:00; 30 minutes before that, the day is
    # still inside Stripe's window but inside our 1-hour margin
    assert oldest_sendable_day(datetime(2026, 12, 1, 23, 30, tzinfo=UTC)) == date(2026, 10, 29)
    assert oldest_sendable_day(datetime(2026, 12, 1, 22, 59, tzinfo=UTC)) == date(2026, 10, 28)


def test_future_days_are_refused():
    with pytest.raises(DayOutOfRangeError, match="future"):
        check_day(date(2026, 12, 3), NOW)
    check_day(date(2026, 12, 2), NOW)  # today's 00:00 is in the past


def test_cancel_window_is_24_hours_minus_a_margin():
    assert cancellable(NOW - timedelta(hours=23, minutes=49), NOW)
    assert not cancellable(NOW - timedelta(hours=23, minutes=51), NOW)
    assert not cancellable(NOW - timedelta(hours=25), NOW)
