"""Every enabled rule's window measured in one query over ``metrics_1m``.

Windows are whole minutes (at most an hour, always including the open minute), so the
minute hypertable serves them; its measures merge as ``schemas.metric_tables`` says.

A rule's window is its last ``window_minutes`` minutes *including the current one*: the
speed layer writes open minutes every few seconds, so an error spike is seen within the
minute it happens. Percentiles merge the minutes' t-digests in PostgreSQL.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from alerting.rules import RULE_COLUMNS, RULE_WIDTH, Rule, Window
from schemas.metric_tables import MEASURE_BY_NAME, MEASURES, Merge

log = logging.getLogger(__name__)

_MAX_WINDOW: Final = timedelta(minutes=60)  # the table's CHECK; lets the planner prune days

_SUMS: Final = ", ".join(f"coalesce({MEASURE_BY_NAME[name].merged('m')}, 0)" for name in (
    "request_count", "error_count", "server_error_count", "latency_sum"))
_DIGEST: Final = next(m.name for m in MEASURES if m.merge is Merge.TDIGEST)

_MEASURE: Final = f"""
SELECT {RULE_COLUMNS}, {_SUMS},
       tdigest_percentile(m.{_DIGEST}, ARRAY[0.5, 0.95, 0.99]::float8[])
FROM alert_rules r
LEFT JOIN metrics_1m m
       ON m.project_id = r.project_id
      AND m.bucket >= %(end)s - make_interval(mins => r.window_minutes)
      AND m.bucket >= %(earliest)s
      AND m.bucket < %(end)s
      AND (r.endpoint IS NULL OR m.endpoint = r.endpoint)
      AND (r.api_key IS NULL OR m.api_key = r.api_key)
      AND (r.method IS NULL OR m.method = r.method)
WHERE r.enabled AND (%(rule_id)s::bigint IS NULL OR r.rule_id = %(rule_id)s)
GROUP BY r.rule_id
ORDER BY r.rule_id"""  # noqa: S608 - Rule's field names and schemas.metric_tables' measures


def window_end(now: datetime) -> datetime:
    """The end of every window evaluated at ``now``: the end of the current minute."""
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


_ENABLED: Final = "SELECT rule_id FROM alert_rules WHERE enabled ORDER BY rule_id"

# Errors that come from a rule or its minutes; anything else (PostgreSQL gone, a missing
# table or function) fails the whole round, which is retried.
RULE_ERRORS: Final = (psycopg.DataError, psycopg.IntegrityError, ArithmeticError, TypeError,
                      ValueError)


def measure(conn: psycopg.Connection[Any], now: datetime,
            rule_id: int | None = None) -> list[tuple[Rule, Window]]:
    """Every enabled rule's window (or only ``rule_id``'s), in one query."""
    end = window_end(now)
    rows = conn.execute(_MEASURE, {"end": end, "earliest": end - _MAX_WINDOW,
                                   "rule_id": rule_id}).fetchall()
    out = []
    for row in rows:  # one row per rule, not per event
        rule = Rule(*row[:RULE_WIDTH])
        requests, errors, server_errors, latency_sum, pcts = row[RULE_WIDTH:]
        p50, p95, p99 = pcts if pcts is not None else (None, None, None)
        out.append((rule, Window(int(requests), int(errors), int(server_errors),
                                 float(latency_sum), p50, p95, p99,
                                 end - timedelta(minutes=rule.window_minutes), end)))
    return out


def measure_each(conn: psycopg.Connection[Any], now: datetime
                 ) -> tuple[list[tuple[Rule, Window]], list[tuple[int, BaseException]]]:
    """``measure``, or, when that one query fails on a rule's data, rule by rule.

    Returns the windows measured and the rules that could not be, with the error.
    """
    try:
        return measure(conn, now), []
    except RULE_ERRORS as exc:
        log.warning("measuring all rules at once failed (%s); measuring them one by one",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
    measured: list[tuple[Rule, Window]] = []
    failed: list[tuple[int, BaseException]] = []
    for (rule_id,) in conn.execute(_ENABLED).fetchall():  # one query per rule (rare path)
        try:
            measured.extend(measure(conn, now, rule_id))
        except RULE_ERRORS as exc:
            failed.append((int(rule_id), exc))
    return measured, failed
