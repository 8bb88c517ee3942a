"""Operations side of the query API: Prometheus metrics, readiness, and its heartbeat.

``/metrics`` counts requests by route template (never the raw path, whose values are
unbounded) and status, times them, and counts server errors. With more than one worker,
``turnstile query`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder so any worker's
``/metrics`` aggregates all of them. ``/readyz`` is ready when PostgreSQL answers and the
lake folder can be listed. The ``Heartbeat`` (component ``query_api``) lets the pipeline
health route, and so the dashboard, see this service like every other one.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import Any, Final

from prometheus_client import (
    Counter,
    Histogram,
)
from psycopg_pool import ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.ops import HeartbeatState

COMPONENT: Final = "query_api"
READY_TIMEOUT_S: Final = 2.0
# Static file mounts (the dashboard's assets, Swagger UI's): one label each.
MOUNTS: Final = ("/static", "/docs-assets")

REQUESTS: Final = Counter(
    "turnstile_query_requests", "Requests answered, by route template, method and status.",
    ["route", "method", "status"])
LATENCY: Final = Histogram(
    "turnstile_query_request_seconds", "Time to answer a request, by route template.",
    ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0))
SERVER_ERRORS: Final = Counter(
    "turnstile_query_server_errors",
    "Requests answered with a 5xx (503: database unavailable; 500: a bug, logged).",
    ["route", "status"])


def instance_name() -> str:
    """host:pid plus a tag per app, so two apps in one process (tests) keep their own rows."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"




def route_label(scope: Scope) -> str:
    """The matched route's template; static files and unmatched paths get fixed labels."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    path = str(scope.get("path", ""))
    for mount in MOUNTS:
        if path.startswith(mount + "/"):
            return mount
    return "unmatched"


class MetricsMiddleware:
    """Counts and times every HTTP request; marks the heartbeat's last success."""

    def __init__(self, app: ASGIApp, heartbeat: HeartbeatState) -> None:
        self.app = app
        self.heartbeat = heartbeat
        self.heartbeat.details.update(requests=0, server_errors=0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = route_label(scope)
        REQUESTS.labels(route, scope["method"], str(status)).inc()
        LATENCY.labels(route).observe(seconds)
        details = self.heartbeat.details
        details["requests"] += 1
        if status >= 500:
            SERVER_ERRORS.labels(route, str(status)).inc()
            details["server_errors"] += 1
        elif self.heartbeat.state != "stopping":
            self.heartbeat.success()


def postgres_ready(pool: ConnectionPool[Any]) -> bool:
    try:
        with pool.connection(timeout=READY_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - whatever fails (pool timeout, socket), "not ready"
        return False
    return True


def readiness(pool: ConnectionPool[Any], lake_ready: bool) -> tuple[bool, dict[str, str]]:
    checks = {"postgres": postgres_ready(pool), "lake": lake_ready}
    return all(checks.values()), {k: "ok" if v else "failing" for k, v in checks.items()}
