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


def test_a_run_failing_on_a_transient_fault_is_retried_until_it_succeeds(caplog):
    import logging
    import threading

    from batch_layer.scheduler import run_forever

    stop = threading.Event()
    calls = []

    def job(day):
        calls.append(day)
        if len(calls) < 3:
            raise ConnectionError("refused")
        stop.set()

    now = datetime(2026, 1, 1, 1, 59, 59, 990000, tzinfo=UTC)
    with caplog.at_level(logging.WARNING):
        run_forever(job, time(2, 0), stop, clock=lambda: now, transient=(ConnectionError,),
                    describe=lambda e: f"PostgreSQL unreachable ({e})")
    assert calls == [date(2026, 1, 1)] * 3
    assert [r.getMessage() for r in caplog.records] == [
        "PostgreSQL unreachable (refused); retrying in 0.5 s",
        "PostgreSQL unreachable (refused); retrying in 1 s"]
