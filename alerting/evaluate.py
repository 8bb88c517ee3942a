"""Every enabled rule measured in a few set-based queries a round, whatever their number.

1. the rules (one query);
2. windows of minutes over ``metrics_1m`` (one query for the current windows and the
   windows before them, one for the same windows a week ago), grouped per rule and member
   (the endpoint or API key of a fan-out rule, '' otherwise);
3. baselines of dynamic rules over the hourly continuous aggregate ``metrics_1h``: each
   hour's value, then their mean and standard deviation, all in SQL;
4. quota use of the keys quota rules watch: this month's days (``metrics_1d``), today's
   hours (``metrics_1h``) and this hour's minutes (``metrics_1m``).

A rule's window is its last ``window_minutes`` minutes *including the current one*: the
speed layer writes open minutes every few seconds, so a spike is seen within its minute.
Percentiles merge the minutes' t-digests in PostgreSQL, only for rules that need them.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from alerting.assess import Baseline, QuotaUse
from alerting.rules import RULE_COLUMNS, Rule, Window
from schemas.metric_tables import MEASURE_BY_NAME, MEASURES, Merge

log = logging.getLogger(__name__)

_MAX_WINDOW: Final = timedelta(minutes=60)  # the table's CHECK; lets the planner prune days
_WEEK: Final = timedelta(days=7)
_MAX_BASELINE: Final = timedelta(days=28)

_SUMS_AS: Final = ", ".join(
    f"coalesce({MEASURE_BY_NAME[name].merged('m')}, 0) AS {alias}" for name, alias in (
        ("request_count", "n"), ("error_count", "e"), ("server_error_count", "s"),
        ("latency_sum", "l")))
_DIGEST: Final = next(m.name for m in MEASURES if m.merge is Merge.TDIGEST)
_PCTS: Final = "ARRAY[0.5, 0.95, 0.99]::float8[]"
_PCT_METRICS: Final = "('latency_p50', 'latency_p95', 'latency_p99')"
_MEMBER: Final = ("CASE r.scope WHEN 'each_endpoint' THEN m.endpoint "
                  "WHEN 'each_api_key' THEN m.api_key ELSE '' END")
_FILTERS: Final = """
      AND (r.endpoint IS NULL OR m.endpoint = r.endpoint)
      AND (r.api_key IS NULL OR m.api_key = r.api_key)
      AND (r.method IS NULL OR m.method = r.method)"""
_ONE: Final = "(%(rule_id)s::bigint IS NULL OR r.rule_id = %(rule_id)s)"

_RULES: Final = (f"SELECT {RULE_COLUMNS} FROM alert_rules r WHERE r.enabled AND {_ONE} "  # noqa: S608
                 "ORDER BY r.rule_id")

# Rules that read the same rows share them: each query first aggregates per distinct
# *series spec* (project, scope, filters, window), then hands the result to every rule of
# that spec, so 10,000 rules over a few hundred specs read the minutes a few hundred times.
_SPEC_JOIN: Final = """a.project_id = r.project_id AND a.scope = r.scope
      AND coalesce(a.endpoint, '') = coalesce(r.endpoint, '')
      AND coalesce(a.api_key, '') = coalesce(r.api_key, '')
      AND coalesce(a.method, '') = coalesce(r.method, '')"""

# Periods: 'now' for every windowed type, 'before' (the window before) for rate of change,
# 'week_ago' (the same window seven days earlier, ``shift``) for volume.
_WINDOWS: Final = f"""
WITH s AS (
    SELECT r.project_id, r.scope, r.endpoint, r.api_key, r.method, r.window_minutes,
           per.period, per.start, per.stop, bool_or(r.metric IN {_PCT_METRICS}) AS pct
    FROM alert_rules r
    CROSS JOIN LATERAL (VALUES
        ('now', %(end)s - %(shift)s - make_interval(mins => r.window_minutes),
         %(end)s - %(shift)s),
        ('before', %(end)s - make_interval(mins => 2 * r.window_minutes),
         %(end)s - make_interval(mins => r.window_minutes))
    ) AS per (period, start, stop)
    WHERE r.enabled AND {_ONE} AND r.rule_type = ANY(%(types)s)
      AND (per.period = 'now' OR (r.rule_type = 'rate_of_change' AND %(shift)s = '0'::interval))
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
), a AS (
    SELECT r.project_id, r.scope, r.endpoint, r.api_key, r.method, r.window_minutes,
           r.period, {_MEMBER} AS member, {_SUMS_AS},
           tdigest_percentile(m.{_DIGEST}, {_PCTS}) FILTER (WHERE r.pct) AS pcts
    FROM s r
    JOIN metrics_1m m
           ON m.project_id = r.project_id
          AND m.bucket >= r.start AND m.bucket < r.stop
          AND m.bucket >= %(earliest)s AND m.bucket < %(end)s - %(shift)s{_FILTERS}
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
)
SELECT r.rule_id, a.period, a.member, a.n, a.e, a.s, a.l, a.pcts
FROM alert_rules r
JOIN a ON {_SPEC_JOIN} AND a.window_minutes = r.window_minutes
WHERE r.enabled AND {_ONE} AND r.rule_type = ANY(%(types)s)
  AND (a.period = 'now' OR r.rule_type = 'rate_of_change')"""  # noqa: S608 - Rule's field names and schemas.metric_tables' measures

_BASELINES: Final = f"""
WITH s AS (
    SELECT r.project_id, r.scope, r.endpoint, r.api_key, r.method,
           max(r.baseline_days) AS days, bool_or(r.metric IN {_PCT_METRICS}) AS pct
    FROM alert_rules r
    WHERE r.enabled AND {_ONE} AND r.rule_type = 'dynamic'
    GROUP BY 1, 2, 3, 4, 5
), a AS (
    SELECT r.project_id, r.scope, r.endpoint, r.api_key, r.method, {_MEMBER} AS member,
           m.bucket, sum(m.request_count) AS n, sum(m.error_count) AS e,
           sum(m.server_error_count) AS s, sum(m.latency_sum) AS l,
           tdigest_percentile(m.{_DIGEST}, {_PCTS}) FILTER (WHERE r.pct) AS pcts
    FROM s r
    JOIN metrics_1h m
           ON m.project_id = r.project_id
          AND m.bucket >= %(hour)s - make_interval(days => r.days)
          AND m.bucket >= %(earliest)s AND m.bucket < %(hour)s{_FILTERS}
    GROUP BY 1, 2, 3, 4, 5, 6, 7
), hourly AS (
    SELECT r.rule_id, a.member, CASE r.metric
        WHEN 'request_count' THEN a.n::float8 * r.window_minutes / 60
        WHEN 'error_rate' THEN a.e::float8 / a.n
        WHEN 'server_error_rate' THEN a.s::float8 / a.n
        WHEN 'latency_avg' THEN a.l / a.n
        WHEN 'latency_p50' THEN a.pcts[1]
        WHEN 'latency_p95' THEN a.pcts[2]
        WHEN 'latency_p99' THEN a.pcts[3] END AS v
    FROM alert_rules r
    JOIN a ON {_SPEC_JOIN}
    WHERE r.enabled AND {_ONE} AND r.rule_type = 'dynamic'
      AND a.bucket >= %(hour)s - make_interval(days => r.baseline_days)
      AND a.n >= greatest(r.min_requests, 1)
)
SELECT rule_id, member, avg(v), stddev_samp(v), count(v)
FROM hourly WHERE v IS NOT NULL GROUP BY rule_id, member"""  # noqa: S608 - as above

_QUOTAS: Final = f"""
WITH k AS (
    SELECT r.rule_id, r.window_minutes, q.project_id, q.api_key, q.monthly_requests,
           CASE r.scope WHEN 'each_api_key' THEN q.api_key ELSE '' END AS member
    FROM alert_rules r
    JOIN quotas q ON q.project_id = r.project_id AND (r.api_key IS NULL OR q.api_key = r.api_key)
    WHERE r.enabled AND {_ONE} AND r.rule_type IN ('quota', 'quota_forecast')
      AND q.monthly_requests IS NOT NULL
), keys AS (
    SELECT DISTINCT project_id, api_key FROM k
), used AS (
    SELECT keys.project_id, keys.api_key,
        coalesce((SELECT sum(d.request_count) FROM metrics_1d d
                  WHERE d.project_id = keys.project_id AND d.api_key = keys.api_key
                    AND d.bucket >= %(month)s AND d.bucket < %(day)s), 0)
      + coalesce((SELECT sum(h.request_count) FROM metrics_1h h
                  WHERE h.project_id = keys.project_id AND h.api_key = keys.api_key
                    AND h.bucket >= %(day)s AND h.bucket < %(hour)s), 0)
      + coalesce((SELECT sum(m.request_count) FROM metrics_1m m
                  WHERE m.project_id = keys.project_id AND m.api_key = keys.api_key
                    AND m.bucket >= %(hour)s AND m.bucket < %(end)s), 0) AS used
    FROM keys
), rates AS (
    SELECT w.project_id, w.api_key, w.window_minutes,
        coalesce((SELECT sum(m.request_count) FROM metrics_1m m
                  WHERE m.project_id = w.project_id AND m.api_key = w.api_key
                    AND m.bucket >= %(end)s - make_interval(mins => w.window_minutes)
                    AND m.bucket >= %(earliest)s AND m.bucket < %(end)s), 0) AS recent
    FROM (SELECT DISTINCT project_id, api_key, window_minutes FROM k) w
)
SELECT k.rule_id, k.member, used.used, k.monthly_requests, rates.recent
FROM k JOIN used USING (project_id, api_key)
JOIN rates USING (project_id, api_key, window_minutes)"""  # noqa: S608 - constant SQL pieces

_WINDOWED: Final = ["threshold", "dynamic", "rate_of_change", "volume"]


def window_end(now: datetime) -> datetime:
    """The end of every window evaluated at ``now``: the end of the current minute."""
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=32)).replace(day=1)


# Errors that come from a rule or its data; anything else (PostgreSQL gone, a missing
# table or function) fails the whole round, which is retried.
RULE_ERRORS: Final = (psycopg.DataError, psycopg.IntegrityError, ArithmeticError, TypeError,
                      ValueError)


@dataclass
class Measured:
    """What the round's queries found, per (rule_id, member)."""

    rules: dict[int, Rule] = field(default_factory=dict)
    windows: dict[tuple[int, str], dict[str, Window]] = field(
        default_factory=lambda: defaultdict(dict))
    baselines: dict[tuple[int, str], Baseline] = field(default_factory=dict)
    quotas: dict[tuple[int, str], QuotaUse] = field(default_factory=dict)
    queries: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per query, for the benchmark

    def member_index(self) -> dict[int, set[str]]:
        """Each rule's members seen in any of the queries."""
        index: dict[int, set[str]] = {}
        for rid, member in (*self.windows, *self.baselines, *self.quotas):
            index.setdefault(rid, set()).add(member)
        return index


def _window(row: tuple[Any, ...], start: datetime, end: datetime) -> Window:
    requests, errors, server_errors, latency_sum, pcts = row
    p50, p95, p99 = pcts if pcts is not None else (None, None, None)
    return Window(int(requests), int(errors), int(server_errors), float(latency_sum),
                  p50, p95, p99, start, end)


def measure(conn: psycopg.Connection[Any], now: datetime,
            rule_id: int | None = None) -> Measured:
    """Every enabled rule's numbers (or only ``rule_id``'s), in five queries."""
    end = window_end(now)
    hour = now.replace(minute=0, second=0, microsecond=0)
    month, month_end = month_bounds(now)
    out = Measured()
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        out.seconds[name] = out.seconds.get(name, 0.0) + time.perf_counter() - clock
        clock = time.perf_counter()

    out.rules = {r.rule_id: r for r in (Rule(*row) for row in conn.execute(
        _RULES, {"rule_id": rule_id}).fetchall())}
    lap("rules")
    for shift in (timedelta(0), _WEEK):
        rows = conn.execute(_WINDOWS, {
            "end": end, "shift": shift, "earliest": end - shift - 2 * _MAX_WINDOW,
            "rule_id": rule_id, "types": _WINDOWED if not shift else ["volume"]}).fetchall()
        for rid, period, member, *values in rows:  # one row per rule member and period
            rule = out.rules.get(rid)
            if rule is None or member is None:
                continue
            span = timedelta(minutes=rule.window_minutes)
            stop = end - shift if period == "now" else end - span
            name = "week_ago" if shift else period
            out.windows[(rid, member)][name] = _window(tuple(values), stop - span, stop)
        lap("week_ago_windows" if shift else "windows")
    for rid, member, mean, stddev, hours in conn.execute(_BASELINES, {
            "hour": hour, "earliest": hour - _MAX_BASELINE, "rule_id": rule_id}).fetchall():
        out.baselines[(rid, member)] = Baseline(float(mean), None if stddev is None
                                                else float(stddev), int(hours))
    lap("baselines")
    for rid, member, used, limit, recent in conn.execute(_QUOTAS, {
            "month": month, "day": now.replace(hour=0, minute=0, second=0, microsecond=0),
            "hour": hour, "end": end, "earliest": end - _MAX_WINDOW,
            "rule_id": rule_id}).fetchall():
        out.quotas[(rid, member)] = QuotaUse(int(used), int(limit), int(recent), month_end)
    lap("quotas")
    out.queries = 5
    return out


def measure_each(conn: psycopg.Connection[Any], now: datetime
                 ) -> tuple[Measured, list[tuple[int, BaseException]]]:
    """``measure``, or, when one of its queries fails on a rule's data, rule by rule.

    Returns what was measured and the rules that could not be, with the error.
    """
    try:
        return measure(conn, now), []
    except RULE_ERRORS as exc:
        log.warning("measuring all rules at once failed (%s); measuring them one by one",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
    merged = Measured()
    failed: list[tuple[int, BaseException]] = []
    ids = [row[0] for row in conn.execute(
        "SELECT rule_id FROM alert_rules WHERE enabled ORDER BY rule_id").fetchall()]
    for rid in ids:  # five queries per rule (the rare path)
        try:
            one = measure(conn, now, rid)
        except RULE_ERRORS as exc:
            failed.append((int(rid), exc))
            continue
        merged.rules |= one.rules
        merged.windows.update(one.windows)
        merged.baselines |= one.baselines
        merged.quotas |= one.quotas
        merged.queries += one.queries
    return merged, failed
