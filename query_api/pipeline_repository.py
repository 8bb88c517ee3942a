"""SQL of the pipeline routes: heartbeats (not per tenant) and dead letters (per project).

Kept apart from ``repository`` (the metric tables): these two tables belong to operations,
not to analytics. Every dead-letter statement filters on the caller's ``project_id``; rows
without a project (a record that could not even be attributed) are shown to no tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from query_api.params import TimeRange

_HEARTBEATS: Final = """
SELECT component, instance, state, started_at, beat_at, last_success_at, lag_events, details,
       extract(epoch FROM now() - beat_at)::float8 AS seconds_since_beat
FROM (SELECT *, row_number() OVER (PARTITION BY component ORDER BY beat_at DESC) AS newest
      FROM pipeline_heartbeats) h
WHERE newest <= %s
ORDER BY component, beat_at DESC"""

_RANGE: Final = "project_id = %s AND recorded_at >= %s AND recorded_at < %s"

_TOTAL: Final = f"SELECT count(*) FROM dead_letters WHERE {_RANGE}"  # noqa: S608 - fixed text

_COUNTS: Final = f"""
SELECT component, reason, count(*) AS count, max(recorded_at) AS last_at
FROM dead_letters WHERE {_RANGE}
GROUP BY component, reason
ORDER BY count DESC, component, reason
LIMIT %s"""  # noqa: S608 - fixed text, values are parameters

_ROWS: Final = f"""
SELECT dead_letter_id, recorded_at, component, reason, kafka_topic, kafka_partition,
       kafka_offset, event_id, payload_sample
FROM dead_letters WHERE {_RANGE}{{after}}
ORDER BY recorded_at DESC, dead_letter_id DESC
LIMIT %s"""  # noqa: S608 - fixed text, values are parameters
_AFTER: Final = " AND (recorded_at, dead_letter_id) < (%s, %s)"


def heartbeats(conn: psycopg.Connection[Any], per_component: int) -> list[dict[str, Any]]:
    """The newest ``per_component`` instances of each component, ages on the DB clock."""
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(_HEARTBEATS, (per_component,)))


def dead_letter_counts(conn: psycopg.Connection[Any], project_id: str, rng: TimeRange,
                       max_groups: int) -> tuple[int, list[dict[str, Any]]]:
    """(total, busiest (component, reason) groups) of the project's range."""
    params = (project_id, rng.start, rng.end)
    row = conn.execute(_TOTAL, params).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        groups = list(cur.execute(_COUNTS, (*params, max_groups)))
    return (int(row[0]) if row else 0), groups


def dead_letter_rows(conn: psycopg.Connection[Any], project_id: str, rng: TimeRange,
                     limit: int, after: tuple[datetime, int] | None = None
                     ) -> list[dict[str, Any]]:
    """Newest first; ``after`` is the (recorded_at, id) of the previous page's last row."""
    sql = _ROWS.format(after=_AFTER if after else "")
    params: tuple[Any, ...] = (project_id, rng.start, rng.end, *(after or ()), limit)
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(sql, params))
