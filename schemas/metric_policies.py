"""Compression and retention of the time tables, as settings applied to TimescaleDB's jobs.

The migrations create the policies with the defaults below; ``turnstile db migrate``
then writes the configured values into the jobs (``alter_job``), touching only those that
differ, so it is safe to run at every start. Values are PostgreSQL intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.metric_tables import ALL_TABLES


class MetricPolicySettings(BaseSettings):
    """``TURNSTILE_METRICS_*``: when chunks are compressed and when rows are dropped.

    ``retention_1m``/``1h``/``1d`` apply to every table of that level (the full series and
    the project-wide aggregates alike).
    """

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_METRICS_", frozen=True,
                                      extra="ignore")

    compress_after: str = "2 hours"
    retention_1m: str = "30 days"
    retention_1h: str = "2 years"
    retention_1d: str = "2 years"
    retention_late_events: str = "90 days"


@dataclass(frozen=True, slots=True)
class Policy:
    """One job: the table it works on, its procedure, and the config key we set."""

    table: str
    proc: str
    key: str
    setting: str


# An aggregate without a refresh policy is refreshed up to this long ago.
SETTLED: Final = timedelta(hours=2)

_LEVEL_SETTING: Final = {60: "retention_1m", 3600: "retention_1h", 86400: "retention_1d"}

POLICIES: Final = (
    Policy("metrics_1m", "policy_compression", "compress_after", "compress_after"),
    *(Policy(t.name, "policy_retention", "drop_after", _LEVEL_SETTING[t.seconds])
      for t in ALL_TABLES),
    Policy("late_events", "policy_retention", "drop_after", "retention_late_events"),
)

# (timescaledb_information.jobs names a continuous aggregate's view as its hypertable)
_FIND = """
SELECT job_id, (config->>%(key)s)::interval = %(value)s::interval
FROM timescaledb_information.jobs
WHERE proc_name = %(proc)s AND hypertable_schema = 'public' AND hypertable_name = %(table)s"""

_SET = """
SELECT alter_job(job_id, config => jsonb_set(config, ARRAY[%(key)s], to_jsonb(%(value)s::text)))
FROM timescaledb_information.jobs WHERE job_id = %(job)s"""


def apply_policies(conn: psycopg.Connection[Any], settings: MetricPolicySettings) -> list[str]:
    """Write the configured intervals into the policy jobs; returns what changed."""
    changed = []
    for policy in POLICIES:
        value = getattr(settings, policy.setting)
        params = {"key": policy.key, "value": value, "proc": policy.proc, "table": policy.table}
        for job_id, same in conn.execute(_FIND, params).fetchall():
            if not same:
                conn.execute(_SET, {**params, "job": job_id})
                changed.append(f"{policy.table} {policy.key} = {value}")
    return changed


_JOBS = """
SELECT j.job_id, j.hypertable_name, j.proc_name, j.schedule_interval, j.config,
       s.last_run_status, s.last_successful_finish, s.total_failures
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s USING (job_id)
ORDER BY j.job_id"""


def jobs(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Every TimescaleDB job with its table, schedule, config and last run."""
    return conn.execute(_JOBS).fetchall()


ATOMIC_REFRESH = '{"buckets_per_batch": 0}'

_END_OFFSET = """
SELECT (config->>'end_offset')::interval FROM timescaledb_information.jobs
WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_schema = 'public'
  AND hypertable_name = %s"""


def refresh_aggregates(conn: psycopg.Connection[Any], start: datetime | None,
                       end: datetime | None = None) -> None:
    """Materialize ``[start, end)`` of every continuous aggregate, each after its source.

    What each refresh policy does, over a longer window: the policies only look back their
    start offset (3 days for hours), so minutes written for older buckets (a backfill, a
    replay after a long outage) reach the aggregates through this. Each aggregate stops
    at its policy's end offset before now, so open buckets stay real-time and re-emits
    into them show at once. Like the policies (migration 0077), each refresh is one atomic
    pass (``buckets_per_batch`` 0): a batched refresh commits batch by batch, so a reader
    could see a level partly materialized. ``conn`` must be in autocommit mode.
    """
    now = datetime.now(UTC)
    for table in ALL_TABLES:
        if table.source is None:
            continue
        row = conn.execute(_END_OFFSET, (table.name,)).fetchone()
        until = now - (row[0] if row else SETTLED)
        conn.execute("CALL refresh_continuous_aggregate(%s, %s, %s, false, %s::jsonb)",
                     (table.name, start, until if end is None else min(end, until),
                      ATOMIC_REFRESH))
