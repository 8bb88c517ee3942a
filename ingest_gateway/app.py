"""Wiring: ``create_app(settings)`` builds the FastAPI app of one worker process.

Each worker opens its own producer, database pool and GeoIP reader in the lifespan (never
at import, never shared across processes) and closes them on shutdown after delivering
what is queued.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from ingest_gateway.auth import Authenticator
from ingest_gateway.enrich import Enricher, GeoIp
from ingest_gateway.openapi import install_openapi
from ingest_gateway.problems import install_problem_handlers
from ingest_gateway.producer import EventPublisher
from ingest_gateway.ratelimit import TokenBuckets
from ingest_gateway.routes import GatewayState, router
from ingest_gateway.settings import GatewaySettings
from schemas.ops import mark_metrics_worker_dead
from schemas.records import KeyPartitioner

_log = logging.getLogger(__name__)


def _database_ready(pool: ConnectionPool[Any]) -> bool:
    try:
        with pool.connection(timeout=2.0) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - readiness only reports, whatever the failure
        return False


def _ip_hash_key(settings: GatewaySettings) -> bytes:
    key = settings.ip_hash_key.get_secret_value()
    if not key:
        _log.warning(
            "TURNSTILE_GATEWAY_IP_HASH_KEY is not set: hashed IPs can be reversed by brute "
            "force; set a secret key for projects with ip_privacy=hash"
        )
    return key.encode()


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway app for one worker process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: ConnectionPool[Any] = ConnectionPool(
            settings.database.dsn(), min_size=1, max_size=settings.db_pool_max,
            kwargs={"autocommit": True}, open=False, name="gateway-keys",
        )
        pool.open(wait=False)
        publisher = EventPublisher(settings)
        partitions = await asyncio.to_thread(publisher.partition_count, 5.0)
        if partitions is None:
            partitions = settings.kafka.events_partitions
        elif partitions != settings.kafka.events_partitions:
            _log.error("topic %s has %d partitions, the settings say %d: keys go where "
                       "Kafka's partitioner puts them for %d, and /readyz says not ready",
                       settings.kafka.events_topic, partitions,
                       settings.kafka.events_partitions, partitions)
        geoip = GeoIp(settings.geoip_database) if settings.geoip_database else None
        rate = settings.rate_limit_events_per_s / settings.workers
        burst = max(settings.rate_limit_burst_events / settings.workers, settings.max_events)
        app.state.gateway = GatewayState(
            settings=settings,
            publisher=publisher,
            auth=Authenticator(pool, settings.key_cache_ttl_s, settings.unknown_key_cache_ttl_s),
            buckets=TokenBuckets(rate, burst),
            enricher=Enricher(geoip, _ip_hash_key(settings)),
            database_ready=lambda: _database_ready(pool),
            partitioner=KeyPartitioner(partitions),
        )
        try:
            yield
        finally:
            publisher.close()
            pool.close()
            if geoip is not None:
                geoip.close()
            mark_metrics_worker_dead(os.getpid())

    app = FastAPI(
        title="Turnstile ingestion gateway",
        version="1",
        description="Agents post batches of captured API requests; 202 means durable in "
                    "Kafka. Every refusal is application/problem+json.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(router)
    install_problem_handlers(app)
    install_openapi(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers (``--factory``): settings from the environment."""
    return create_app(GatewaySettings())
