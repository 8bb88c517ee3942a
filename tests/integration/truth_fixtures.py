"""Wiring for the whole-pipeline truth test: a real gateway, and what each layer wrote.

The gateway runs under uvicorn in a thread as in the gateway's own integration tests; the
readers below return what the speed layer and billing stored, keyed like ``GroundTruth``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg
import uvicorn

from ingest_gateway.app import create_app
from ingest_gateway.settings import GatewaySettings
from schemas import keystore
from schemas.keys import KeyKind
from schemas.settings import DatabaseSettings, KafkaSettings
from turnstile_cli.stack import free_ports


@dataclass(frozen=True)
class RunningGateway:
    url: str
    settings: GatewaySettings


@contextmanager
def running_gateway(bootstrap: str, database_url: str, topic: str,
                    partitions: int = 12) -> Iterator[RunningGateway]:
    """``create_app(settings)`` under uvicorn on a free port, stopped on exit."""
    (port,) = free_ports(1)
    settings = GatewaySettings(
        port=port, workers=1,
        kafka=KafkaSettings(bootstrap=bootstrap, events_topic=topic,
                            events_partitions=partitions),
        database=DatabaseSettings(url=database_url),
    )
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "gateway failed to start"
            assert time.monotonic() < deadline, "gateway did not start in 20 s"
            time.sleep(0.02)
        yield RunningGateway(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "gateway did not stop"


def create_projects(db: psycopg.Connection, names: Sequence[str]) -> dict[str, str]:
    """A project and a write key for each name; returns project → write key secret."""
    keys = {}
    for name in names:
        keystore.create_project(db, name)
        keys[name] = keystore.create_key(db, name, KeyKind.WRITE, "loadgen").secret
    return keys


def _day_bounds(day: date) -> tuple[str, str]:
    return f"{day.isoformat()}T00:00:00Z", f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z"


def stream_counts(db: psycopg.Connection, projects: Sequence[str], day: date
                  ) -> dict[tuple[str, str, str, str, int], int]:
    """``metrics_1m`` summed per (project, api_key, day, endpoint, status class)."""
    start, end = _day_bounds(day)
    rows = db.execute(
        "SELECT project_id, api_key, endpoint, status_class, sum(request_count)::bigint"
        " FROM metrics_1m WHERE project_id = ANY(%s) AND bucket >= %s::timestamptz"
        " AND bucket < %s::timestamptz GROUP BY 1, 2, 3, 4",
        (list(projects), start, end)).fetchall()
    return {(p, k, day.isoformat(), e, int(s)): int(n) for p, k, e, s, n in rows}


def stream_percentiles(db: psycopg.Connection, projects: Sequence[str], day: date
                       ) -> dict[tuple[str, str, str], tuple[int, list[float]]]:
    """p50/p95/p99 of the merged minute digests per (project, endpoint, day)."""
    start, end = _day_bounds(day)
    rows = db.execute(
        "SELECT project_id, endpoint, sum(request_count)::bigint,"
        " tdigest_percentile(latency_digest, ARRAY[0.5, 0.95, 0.99])"
        " FROM metrics_1m WHERE project_id = ANY(%s) AND bucket >= %s::timestamptz"
        " AND bucket < %s::timestamptz GROUP BY 1, 2",
        (list(projects), start, end)).fetchall()
    return {(p, e, day.isoformat()): (int(n), list(q)) for p, e, n, q in rows}


def late_events(db: psycopg.Connection, projects: Sequence[str]
                ) -> dict[tuple[str, str, str], int]:
    rows = db.execute(
        "SELECT project_id, api_key,"
        " to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:00\"Z\"'), event_count"
        " FROM late_events WHERE project_id = ANY(%s)", (list(projects),)).fetchall()
    return {(p, k, m): int(n) for p, k, m, n in rows}


def billing(db: psycopg.Connection, projects: Sequence[str], day: date
            ) -> dict[tuple[str, str, str], tuple[int, int, int, int, int]]:
    """billing_usage: (total, errors, 5xx, bytes in, bytes out) per (project, key, day)."""
    rows = db.execute(
        "SELECT project_id, api_key, total_requests, error_count, server_error_count,"
        " bytes_in, bytes_out FROM billing_usage WHERE project_id = ANY(%s) AND day = %s",
        (list(projects), day)).fetchall()
    return {(p, k, day.isoformat()): tuple(int(x) for x in rest)  # type: ignore[misc]
            for p, k, *rest in rows}


def reconciliation(db: psycopg.Connection, projects: Sequence[str], day: date
                   ) -> dict[tuple[str, str], dict[str, object]]:
    cur = db.execute(
        "SELECT project_id, api_key, batch_count, stream_count, difference,"
        " late_beyond_lateness, duplicates_removed, duplicates_in_stream, unexplained, status"
        " FROM reconciliation WHERE project_id = ANY(%s) AND day = %s",
        (list(projects), day))
    names = [d.name for d in cur.description or []]
    return {(r[0], r[1]): dict(zip(names[2:], r[2:], strict=True)) for r in cur.fetchall()}
