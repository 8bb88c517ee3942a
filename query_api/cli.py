"""``turnstile query``: run the query API under uvicorn.

Options become ``TURNSTILE_QUERY_*`` variables so each uvicorn worker process builds the
same settings through ``app_factory``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the CLI stays light: FastAPI loads only when the server starts
    from fastapi import FastAPI


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
    lake_root: Annotated[Path | None, typer.Option(
        help="Parquet lake root (TURNSTILE_QUERY_LAKE_ROOT).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the query API (analytics, billing, keys, quotas; OpenAPI at /docs)."""
    import uvicorn

    from query_api.settings import QuerySettings

    for name, value in (("PORT", port), ("HOST", host), ("WORKERS", workers),
                        ("LAKE_ROOT", lake_root)):
        if value is not None:
            os.environ[f"TURNSTILE_QUERY_{name}"] = str(value)
    settings = QuerySettings()
    uvicorn.run("query_api.cli:app_factory", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers, log_level=log_level)
