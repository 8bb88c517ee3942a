from datetime import UTC, date, datetime, time

from batch_layer.scheduler import days_to_run, next_run


def test_reruns_the_last_n_closed_days_oldest_first():
    assert days_to_run(date(2026, 3, 2), 3) == [date(2026, 2, 27), date(2026, 2, 28),
                                                date(2026, 3, 1)]


def test_next_run_is_today_before_the_hour_and_tomorrow_after():
    at = time(2, 0)
    assert next_run(datetime(2026, 1, 1, 1, 59, tzinfo=UTC), at) == datetime(
        2026, 1, 1, 2, 0, tzinfo=UTC)
    assert next_run(datetime(2026, 1, 1, 2, 0, tzinfo=UTC), at) == datetime(
        2026, 1, 2, 2, 0, tzinfo=UTC)
