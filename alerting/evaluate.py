"""Every enabled rule's window measured in one query over ``metrics_1m``.

Windows are whole minutes (at most an hour, always including the open minute), so the
minute hypertable serves them; its measures merge as ``schemas.metric_tables`` says.

A rule's window is its last ``window_minutes`` minutes *including the current one*: the
speed layer writes open minutes every few seconds, so an error spike is seen within the
minute it happens. Percentiles merge the minutes' t-digests in PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from alerting.rules import RULE_COLUMNS, RULE_WIDTH, Rule, Window
from schemas.metric_tables import MEASURE_BY_NAME, MEASURES, Merge

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
WHERE r.enabled
GROUP BY r.rule_id
ORDER BY r.rule_id"""  # noqa: S608 - Rule's field names and schemas.metric_tables' measures


def window_end(now: datetime) -> datetime:
    """The end of every window evaluated at ``now``: the end of the current minute."""
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


def measure(conn: psycopg.Connection[Any], now: datetime) -> list[tuple[Rule, Window]]:
    end = window_end(now)
    rows = conn.execute(_MEASURE, {"end": end, "earliest": end - _MAX_WINDOW}).fetchall()
    out = []
    for row in rows:  # one row per rule, not per event
        rule = Rule(*row[:RULE_WIDTH])
        requests, errors, server_errors, latency_sum, pcts = row[RULE_WIDTH:]
        p50, p95, p99 = pcts if pcts is not None else (None, None, None)
        out.append((rule, Window(int(requests), int(errors), int(server_errors),
                                 float(latency_sum), p50, p95, p99,
                                 end - timedelta(minutes=rule.window_minutes), end)))
    return out
