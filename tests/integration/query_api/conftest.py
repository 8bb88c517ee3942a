"""Two tenants with known data in every table the query API reads, and a running app."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from query_api.app import create_app
from query_api.deps import get_now
from query_api.settings import QuerySettings
from schemas import keystore
from schemas.keys import KeyKind
from schemas.lake import LakeSettings
from schemas.metric_policies import refresh_aggregates
from schemas.settings import DatabaseSettings
from tests.integration.query_api.fixtures import Metric, insert_metrics, write_lake_file

# Historical data lives on fixed past days so expectations are exact.
DAY0 = datetime(2025, 6, 2, tzinfo=UTC)  # a Monday


@dataclass
class Tenant:
    project_id: str
    read: str
    admin: str
    write: str

    def h(self, kind: str = "read") -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, kind)}"}


@dataclass
class World:
    client: TestClient
    a: Tenant
    b: Tenant
    now: datetime
    lake: Path


def _tenant(conn: psycopg.Connection, name: str) -> Tenant:
    pid = f"{name}-{uuid.uuid4().hex[:8]}"
    keystore.create_project(conn, pid)
    keys = {k: keystore.create_key(conn, pid, k).secret for k in KeyKind}
    return Tenant(pid, keys[KeyKind.READ], keys[KeyKind.ADMIN], keys[KeyKind.WRITE])


def _seed(conn: psycopg.Connection, a: Tenant, b: Tenant, now: datetime, lake: Path) -> None:
    cur = now.replace(second=0, microsecond=0)
    pa, pb = a.project_id, b.project_id
    insert_metrics(conn, "metrics_1m", [
        # realtime window of A: 10 + 4 + 6 requests in the last 3 minutes
        Metric(cur, pa, "cust-1", "/users/{id}", "GET", 2, [10.0] * 10, bytes_in=100,
               bytes_out=1000),
        Metric(cur - timedelta(minutes=1), pa, "cust-2", "/orders", "POST", 5, [100.0] * 4,
               errors=4, server_errors=4),
        Metric(cur - timedelta(minutes=2), pa, "cust-1", "/orders", "POST", 2, [20.0] * 6),
        Metric(cur - timedelta(minutes=30), pa, "cust-1", "/old", "GET", 2, [1.0]),
        Metric(cur, pb, "cust-b", "/secret", "DELETE", 2, [5.0] * 1000),
        # historical minutes of A on DAY0 10:00–10:02
        *[Metric(DAY0 + timedelta(hours=10, minutes=i), pa, "cust-1", "/users/{id}", "GET", 2,
                 [float(10 + i)] * (i + 1)) for i in range(3)],
        Metric(DAY0 + timedelta(hours=10), pb, "cust-b", "/secret", "GET", 2, [1.0] * 50),
    ])
    # metrics_1h / metrics_1d aggregate these minutes: DAY0's first three hours at minute 0,
    # and one row at noon of each of five days (continuous aggregates take no rows).
    insert_metrics(conn, "metrics_1m", [
        Metric(DAY0 + timedelta(hours=h), pa, key, "/users/{id}", "GET", sc,
               [float(h + 1)] * n, errors=n if sc >= 4 else 0, server_errors=n if sc == 5 else 0)
        for h in range(3) for key, sc, n in (("cust-1", 2, 10), ("cust-2", 5, 2))
    ] + [Metric(DAY0, pb, "cust-b", "/secret", "GET", 2, [1.0] * 500)] + [
        Metric(DAY0 + timedelta(days=d, hours=12), pa, "cust-1", "/users/{id}", "GET", 2,
               [5.0] * (d + 1))
        for d in range(5)
    ] + [Metric(DAY0 + timedelta(hours=12), pb, "cust-b", "/secret", "GET", 2, [1.0] * 700)])
    # the lake: DAY0 events for drill-down / countries / sub-minute series, and live events
    base = DAY0 + timedelta(hours=10)
    write_lake_file(lake, pa, [
        {"event_id": f"a{i}", "timestamp": base + timedelta(seconds=10 * i), "method": "GET",
         "endpoint": "/users/{id}", "status_code": 200 if i % 3 else 503,
         "latency_ms": float(i), "api_key": "cust-1" if i % 2 else "=HYPERLINK(\"x\")",
         "country": "FR" if i < 4 else "US", "tags": [("plan", "pro")]}
        for i in range(12)
    ])
    write_lake_file(lake, pb, [
        {"event_id": f"b{i}", "timestamp": base + timedelta(seconds=i), "method": "GET",
         "endpoint": "/secret", "status_code": 418, "latency_ms": 1.0, "api_key": "cust-b",
         "country": "JP"} for i in range(5)
    ])
    write_lake_file(lake, pa, [
        {"event_id": f"live{i}", "timestamp": now - timedelta(seconds=20), "method": "GET",
         "endpoint": "/users/{id}", "status_code": 201, "latency_ms": 3.0, "api_key": "cust-1"}
        for i in range(3)
    ], name="live")
    write_lake_file(lake, pb, [
        {"event_id": "blive", "timestamp": now - timedelta(seconds=20), "method": "GET",
         "endpoint": "/secret", "status_code": 418, "latency_ms": 3.0, "api_key": "cust-b"}
    ], name="live")
    # billing: June 2025
    for pid, key, n, status in ((pa, "cust-1", 100, "ok"), (pa, "cust-2", 7, "unexplained"),
                                (pb, "cust-b", 999, "ok")):
        for d in (2, 3):
            conn.execute(
                "INSERT INTO billing_usage (project_id, api_key, day, total_requests, "
                "requests_by_tier, error_count, server_error_count, bytes_in, bytes_out) "
                "VALUES (%s, %s, %s, %s, %s, 1, 0, 10, 20)",
                (pid, key, date(2025, 6, d), n, psycopg.types.json.Jsonb({"default": n})))
            conn.execute(
                "INSERT INTO reconciliation (project_id, api_key, day, batch_count, "
                "stream_count, difference, unexplained, status) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s)",
                (pid, key, date(2025, 6, d), n, n - (d == 3 and status != "ok"),
                 int(d == 3 and status != "ok"), int(d == 3 and status != "ok"),
                 "unexplained" if d == 3 and status != "ok" else "ok"))


@pytest.fixture(scope="session")
def world(stack, tmp_path_factory) -> Iterator[World]:
    lake = tmp_path_factory.mktemp("lake")
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        a, b = _tenant(conn, "proj-a"), _tenant(conn, "proj-b")
        _seed(conn, a, b, now, lake)
        # Minutes written for past buckets (fixed days, and the last hour) reach the
        # aggregates as after a backfill: the policies may have passed them already.
        refresh_aggregates(conn, DAY0 - timedelta(days=1))
    settings = QuerySettings(database=DatabaseSettings(url=stack.database_url),
                             lake=LakeSettings(uri=str(lake)),
                             pool_max_size=4)
    app = create_app(settings)
    app.dependency_overrides[get_now] = lambda: now
    with TestClient(app) as client:
        yield World(client, a, b, now, lake)
