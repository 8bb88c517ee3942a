"""``turnstile gateway``: run the ingestion gateway under uvicorn with N worker processes.

Options are exported as ``TURNSTILE_GATEWAY_*`` variables so every worker builds the same
settings (the rate limit divides by the worker count). With several workers, Prometheus
multiprocess mode gets a fresh folder in the state directory before they start.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from schemas.ops import MULTIPROC_ENV

# Spelled here, not imported from ingest_gateway.metrics: importing prometheus_client in
# this parent process before the variable is set is harmless, but needless.


def gateway(
    port: Annotated[
        int | None, typer.Option("--port", help="Listen port (TURNSTILE_GATEWAY_PORT, 8080).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes (TURNSTILE_GATEWAY_WORKERS).")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Bind address (TURNSTILE_GATEWAY_HOST).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the ingestion gateway (POST /api/v1/events/batch → Kafka)."""
    import uvicorn

    from ingest_gateway.settings import GatewaySettings
    from schemas.settings import StateSettings

    for name, value in (("PORT", port), ("WORKERS", workers), ("HOST", host)):
        if value is not None:
            os.environ[f"TURNSTILE_GATEWAY_{name}"] = str(value)
    settings = GatewaySettings()  # fail fast on a bad setting, before any worker starts
    if settings.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        folder = Path(StateSettings().state_dir) / "gateway-prometheus"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(folder.resolve())
    uvicorn.run(
        "ingest_gateway.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.delivery_timeout_s) + 5,
    )
