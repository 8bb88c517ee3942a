"""The query API application: ``create_app(settings)`` wires pool, lake, auth and routes.

Handlers are plain ``def`` functions: psycopg and DuckDB calls are blocking, and FastAPI
runs such handlers in its thread pool, sized together with the connection pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from psycopg_pool import ConnectionPool

from query_api import ops
from query_api.dashboard import install_dashboard
from query_api.deps import KeyCache
from query_api.guards import BodyLimitMiddleware, guard_parameters
from query_api.lake import Lake
from query_api.openapi import install_problem_openapi
from query_api.problems import install_problem_handlers
from query_api.routes import alerts, analytics, billing, keys, pipeline, quotas, timeseries
from query_api.settings import QuerySettings
from schemas.lake import open_lake_root
from schemas.ops import Heartbeat, HeartbeatState, render_metrics

API_VERSION = "1.0.0"
DESCRIPTION = """\
Real-time and historical analytics of the requests your API served, per endpoint and per
consumer (`api_key`), usage for billing, and key and quota management.

**Authentication**: `Authorization: Bearer <key>` (or `X-API-Key`). Analytics routes take a
read or admin key; `/keys` and quota changes take an admin key. A key only sees its own
project.

**Errors** are `application/problem+json` with `invalid_params: [{name, reason}]`. Text
parameters must be storable (no U+0000, no lone surrogates, at most 2048 characters); JSON
bodies are at most 64 KiB (413) and 32 levels deep.

**CSV**: every list or series answers `text/csv` with `?format=csv` or `Accept: text/csv`.

**Times**: RFC 3339 (`2026-11-23T10:00:00Z`), a date, Unix seconds, or `now`, `now-24h`.
"""


def create_pool(settings: QuerySettings, *, open_now: bool = True) -> ConnectionPool[Any]:
    timeout_ms = settings.statement_timeout_ms
    work_mem_kb = settings.work_mem_mb * 1024

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"SET statement_timeout = {int(timeout_ms)}")
        conn.execute(f"SET work_mem = {int(work_mem_kb)}")  # kB; an int, never user text
        conn.execute("SET TIME ZONE 'UTC'")

    return ConnectionPool(
        settings.database.dsn(),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        kwargs={"autocommit": True},
        configure=configure,
        open=open_now,
        name="turnstile-query",
    )


def create_app(settings: QuerySettings) -> FastAPI:
    """Build the app; the pool opens, the lake attaches and the heartbeat starts on startup."""
    beat_state = HeartbeatState()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = create_pool(settings, open_now=False)
        pool.open(wait=True, timeout=30.0)
        lake = Lake(open_lake_root(settings.lake, settings.state.state_dir, create=False),
                    threads=settings.duckdb_threads,
                    memory_limit=settings.duckdb_memory_limit)
        app.state.pool = pool
        app.state.lake = lake
        beat_state.details.update(port=settings.port, workers=settings.workers)
        beat_state.state = "running"
        heartbeat = Heartbeat(settings.database.dsn(), ops.COMPONENT, beat_state,
                              instance=ops.instance_name()).start()
        app.state.heartbeat = heartbeat
        try:
            yield
        finally:
            beat_state.state = "stopping"
            heartbeat.stop()
            pool.close()
            lake.close()

    # FastAPIOffline serves Swagger UI and ReDoc from its own package: /docs needs no CDN.
    app = FastAPIOffline(
        title="Turnstile query API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
        static_url="/docs-assets",
        swagger_ui_parameters={"validatorUrl": None},
        dependencies=[Depends(guard_parameters)],
    )
    app.state.settings = settings
    app.state.key_cache = KeyCache(settings.auth_cache_ttl_s)
    install_problem_handlers(app)
    for module in (analytics, timeseries, billing, keys, quotas, alerts, pipeline):
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        """PostgreSQL answers and the lake folder can be listed; else 503 naming the check."""
        ready, checks = ops.readiness(request.app.state.pool, request.app.state.lake.ready())
        return JSONResponse({"component": ops.COMPONENT, "ready": ready, "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        payload, content_type = render_metrics()
        return Response(payload, media_type=content_type)

    install_dashboard(app)
    install_problem_openapi(app)
    # Outermost last: metrics see every answer, the body limit runs before any parsing.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(ops.MetricsMiddleware, heartbeat=beat_state)
    return app
