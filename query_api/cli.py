"""``turnstile query``: run the query API under uvicorn.

Options become ``TURNSTILE_QUERY_*`` variables so each uvicorn worker process builds the
same settings through ``app_factory``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from schemas.ops import MULTIPROC_ENV

if TYPE_CHECKING:  # the CLI stays light: FastAPI loads only when the server starts
    from fastapi import FastAPI

# Spelled here, not imported from query_api.ops, to keep prometheus_client out of the CLI.


def app_factory() -> FastAPI:
    """Entry point of each worker: settings from the environment, then the app."""
    from query_api.app import create_app
    from query_api.settings import QuerySettings

    return create_app(QuerySettings())


def query(
    port: Annotated[int | None, typer.Option(help="Listen port (TURNSTILE_QUERY_PORT, 8090).")
                    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (TURNSTILE_QUERY_HOST).")
                    ] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (TURNSTILE_QUERY_WORKERS).")
                       ] = None,
    lake_uri: Annotated[str | None, typer.Option(
        "--lake-uri", "--lake-root",
        help="Parquet lake: a folder or s3://bucket/prefix (TURNSTILE_LAKE_URI).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the query API (analytics, billing, keys, quotas; OpenAPI at /docs)."""
    import uvicorn

    from query_api.settings import QuerySettings
    from schemas.settings import StateSettings

    for name, value in (("QUERY_PORT", port), ("QUERY_HOST", host),
                        ("QUERY_WORKERS", workers), ("LAKE_URI", lake_uri)):
        if value is not None:
            os.environ[f"TURNSTILE_{name}"] = str(value)
    settings = QuerySettings()
    if settings.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        # each worker writes its samples there; any worker's /metrics sums them all
        folder = Path(StateSettings().state_dir) / "query-prometheus"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(folder.resolve())
    uvicorn.run("query_api.cli:app_factory", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers, log_level=log_level)
