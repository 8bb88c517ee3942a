"""A project with known traffic, the real query API on a free port, and headless Chromium.

The traffic is laid out relative to the real clock (the browser computes "last 24 h" from
it), in metrics_1m the way the speed layer writes them, plus lake files for the
countries panel. Expected figures are computed here from the same seed list, independently
of the API's code.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from query_api.app import create_app
from query_api.settings import QuerySettings
from schemas import keystore
from schemas.keys import KeyKind
from schemas.lake import LakeSettings
from schemas.metric_policies import refresh_aggregates
from schemas.settings import DatabaseSettings
from tests.integration.query_api.fixtures import Metric, insert_metrics, write_lake_file

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
COUNTRY_OF = {"cust-alpha": "DE", "cust-beta": "US", "cust-gamma": "FR", "cust-delta": "GB",
              "cust-epsilon": "JP"}


@dataclass
class Site:
    url: str
    project_id: str
    read_key: str
    seed: list[Metric]
    now: datetime

    def api(self, url: str) -> dict:
        """GET an absolute API URL (as the page requested it) with the read key."""
        r = httpx.get(url, headers={"Authorization": f"Bearer {self.read_key}"}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def expected(self, since: timedelta, until: timedelta = timedelta(0),
                 **match: str) -> dict[str, int]:
        """Totals of the seeded rows in ``[now - since, now - until)`` matching the filters."""
        rows = [m for m in self.seed if self.now - since <= m.bucket < self.now - until
                and all(getattr(m, k) == v for k, v in match.items())]
        return {"requests": sum(len(m.latencies) for m in rows),
                "errors": sum(m.errors for m in rows),
                "server_errors": sum(m.server_errors for m in rows)}


def _traffic(now: datetime) -> list[Metric]:
    cur = now.replace(second=0, microsecond=0)

    def m(ago: timedelta, key: str, endpoint: str, method: str, status: int, latency: float,
          n: int) -> Metric:
        errors = n if status >= 4 else 0
        return Metric(cur - ago, "", key, endpoint, method, status, [latency] * n, errors=errors,
                      server_errors=n if status == 5 else 0, bytes_in=40 * n, bytes_out=900 * n)

    minutes, hours = (lambda x: timedelta(minutes=x)), (lambda x: timedelta(hours=x))
    # steady background traffic (never on /orders or /health, which the test filters on)
    background = [
        *[m(minutes(i), "cust-alpha", "/users/{id}", "GET", 2, 8.0 + i % 7,
            8 + round(6 * math.sin(i / 6))) for i in range(3, 59)],
        *[m(minutes(i), "cust-delta", "/products", "GET", 2, 30.0 + i % 11, 3 + i % 5)
          for i in range(3, 59)],
        *[m(minutes(i), "cust-delta", "/products", "GET", 4, 5.0, 1) for i in range(4, 59, 9)],
        *[m(hours(h), "cust-gamma", "/users/{id}", "GET", 2, 14.0 + h % 5,
            120 + round(60 * math.sin(h / 3))) for h in range(2, 24)],
        *[m(hours(h), "cust-delta", "/products", "GET", 2, 35.0, 40 + h) for h in range(2, 24)],
        *[m(hours(h), "cust-epsilon", "/search", "GET", 5, 480.0, 6) for h in (4, 11, 12, 19)],
        *[m(timedelta(days=d), "cust-alpha", "/users/{id}", "GET", 2, 11.0, 800 + 100 * d)
          for d in range(2, 30) if d != 7],  # nothing on a range boundary
    ]
    return background + [
        # the last hour (and the live 5 minutes)
        m(minutes(2), "cust-alpha", "/users/{id}", "GET", 2, 9.0, 12),
        *[m(minutes(x), "cust-alpha", "/users/{id}", "GET", 2, 12.0, 25) for x in (10, 20, 30, 40)],
        m(minutes(15), "cust-beta", "/orders", "POST", 2, 80.0, 30),
        m(minutes(25), "cust-beta", "/orders", "POST", 5, 250.0, 10),
        m(minutes(35), "cust-alpha", "/health", "GET", 4, 2.0, 5),
        # earlier today
        m(hours(5), "cust-gamma", "/users/{id}", "GET", 2, 20.0, 200),
        m(hours(8), "cust-gamma", "/reports", "GET", 3, 40.0, 50),
        # earlier this week
        m(timedelta(days=3), "cust-alpha", "/users/{id}", "GET", 2, 15.0, 1000),
    ]


def _rolled(rows: list[Metric], step: timedelta) -> list[Metric]:
    """Rows merged per bucket of ``step`` and key, as the speed layer writes its minutes."""
    out: dict[tuple, Metric] = {}
    for r in rows:
        bucket = datetime.fromtimestamp(
            r.bucket.timestamp() // step.total_seconds() * step.total_seconds(), UTC)
        k = (bucket, r.api_key, r.endpoint, r.method, r.status_class)
        if k in out:
            o = out[k]
            out[k] = replace(o, latencies=o.latencies + r.latencies, errors=o.errors + r.errors,
                             server_errors=o.server_errors + r.server_errors,
                             bytes_in=o.bytes_in + r.bytes_in, bytes_out=o.bytes_out + r.bytes_out)
        else:
            out[k] = replace(r, bucket=bucket)
    return list(out.values())


def _write_lake(lake: Path, project_id: str, rows: list[Metric]) -> None:
    by_day: dict[str, list[dict]] = {}
    for r in rows:
        status = {2: 200, 3: 304, 4: 404, 5: 503}[r.status_class]
        for i, latency in enumerate(r.latencies):
            by_day.setdefault(r.bucket.date().isoformat(), []).append({
                "event_id": uuid.uuid4().hex, "timestamp": r.bucket + timedelta(seconds=i % 60),
                "method": r.method, "endpoint": r.endpoint, "status_code": status,
                "latency_ms": latency, "api_key": r.api_key, "country": COUNTRY_OF[r.api_key]})
    for day, events in by_day.items():
        write_lake_file(lake, project_id, events, name=f"part-{day}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory) -> Iterator[Site]:
    now = datetime.now(UTC)
    lake = tmp_path_factory.mktemp("dashboard-lake")
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        pid = f"dash-{uuid.uuid4().hex[:8]}"
        keystore.create_project(conn, pid, "Dashboard demo")
        read_key = keystore.create_key(conn, pid, KeyKind.READ, "wall screen").secret
        seed = [replace(r, project_id=pid) for r in _traffic(now)]
        # metrics_1h / metrics_1d are continuous aggregates of these minutes, hours old
        # when written: refreshed as after a backfill
        insert_metrics(conn, "metrics_1m", _rolled(seed, timedelta(minutes=1)))
        refresh_aggregates(conn, now - timedelta(days=31))
    _write_lake(lake, pid, [r for r in seed if r.bucket >= now - timedelta(days=1)])

    settings = QuerySettings(database=DatabaseSettings(url=stack.database_url),
                             lake=LakeSettings(uri=str(lake)),
                             pool_max_size=4)
    with serve_query_api(settings, "dashboard-api") as url:
        yield Site(url, pid, read_key, seed, now)


@contextlib.contextmanager
def serve_query_api(settings: QuerySettings, name: str) -> Iterator[str]:
    """The query API on a free port in a thread of this process; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "query API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


# Module scope: Playwright's sync API keeps an asyncio loop running in this thread while it
# is open, and later tests that call asyncio.run() would fail with a session-wide browser.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian chromium is required: apt-get install -y chromium"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
