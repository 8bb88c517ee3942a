"""Nightly scheduling: when to run, and which days (the last N, so late files are picked up).

Pure functions decide; ``run_forever`` sleeps until the next run and calls the job. A day
is re-run on each of the N nights after it closes; each run replaces that day's rows, and
``nightly`` then exports those days to Stripe, which corrects whatever the re-run changed. A
run that fails on a real fault (PostgreSQL gone) is retried with capped backoff, one log
line per attempt, until it succeeds; any other failure is logged and waits for the next
night (which re-runs the same days).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any

import psycopg

from batch_layer.jobs import export_after_billing, run_day
from batch_layer.lake import Lake
from batch_layer.settings import BatchSettings
from schemas.retry import call_until_done

log = logging.getLogger(__name__)


def days_to_run(today: date, rerun_days: int) -> list[date]:
    """The closed days to (re)compute on ``today``: yesterday and the N-1 days before it."""
    return [today - timedelta(days=i) for i in range(rerun_days, 0, -1)]


def next_run(now: datetime, run_at: time) -> datetime:
    """The next UTC instant at ``run_at`` strictly after ``now``."""
    now = now.astimezone(UTC)
    candidate = datetime.combine(now.date(), run_at, tzinfo=UTC)
    return candidate if candidate > now else candidate + timedelta(days=1)


def run_forever(job: Callable[[date], None], run_at: time, stop: threading.Event,
                clock: Callable[[], datetime] = lambda: datetime.now(UTC), *,
                transient: tuple[type[BaseException], ...] = (),
                describe: Callable[[BaseException], str] = str) -> None:
    """Call ``job(today)`` at ``run_at`` UTC every day until ``stop`` is set.

    ``transient`` errors retry the run (``describe`` says why, in the log line).
    """
    while not stop.is_set():
        due = next_run(clock(), run_at)
        log.info("billing scheduler: next run at %s", due.isoformat())
        if stop.wait(max(0.0, (due - clock()).total_seconds())):
            return
        try:
            call_until_done(partial(job, due.date()), transient=transient,
                            describe=describe, log=log, stop=stop)
        except Exception:  # keep the scheduler alive; the next night re-runs these days
            if stop.is_set():
                return
            log.exception("billing scheduler: run of %s failed", due.date())


def nightly(settings: BatchSettings, lake: Lake, conn: psycopg.Connection, today: date,
            **export_options: Any) -> list[date]:
    """One night: re-bill the last N days, then (when configured) export them to Stripe."""
    days = days_to_run(today, settings.rerun_days)
    for day in days:
        run_day(settings, lake, conn, day)
    export_after_billing(settings, conn, days, **export_options)
    return days
