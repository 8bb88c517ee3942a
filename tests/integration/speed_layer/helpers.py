"""Reading what the speed layer wrote, in the shape of the unit tests' reference."""

from __future__ import annotations

import psycopg

from tests.unit.speed_layer.fixtures import assert_rows_equal, reference  # noqa: F401

_COLUMNS = ("request_count", "error_count", "server_error_count", "latency_sum", "latency_min",
            "latency_max", "bytes_in", "bytes_out")


def metrics(db: psycopg.Connection, prefix: str, table: str = "metrics_1m") -> dict:
    rows = db.execute(
        f"SELECT (extract(epoch FROM bucket) * 1000000)::bigint, project_id, api_key, endpoint,"  # noqa: S608
        f" method, status_class, {', '.join(_COLUMNS)} FROM {table} WHERE project_id LIKE %s",
        (prefix + "%",),
    ).fetchall()
    return {tuple(r[:6]): dict(zip(_COLUMNS, r[6:], strict=True)) for r in rows}


def total(db: psycopg.Connection, prefix: str, table: str = "metrics_1m") -> int:
    row = db.execute(
        f"SELECT coalesce(sum(request_count), 0) FROM {table} WHERE project_id LIKE %s",  # noqa: S608
        (prefix + "%",),
    ).fetchone()
    assert row is not None
    return int(row[0])
