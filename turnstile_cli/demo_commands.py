"""``turnstile demo``: demo traffic through the real agent (heavy imports stay inside)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer


def demo(
    rate: Annotated[float, typer.Option(help="Requests per second (Poisson arrivals).")] = 50.0,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run; forever when omitted.")
    ] = None,
    gateway_url: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8080",
    write_key: Annotated[
        str | None,
        typer.Option(envvar="TURNSTILE_AGENT_WRITE_KEY",
                     help="Write key; default: the local stack's demo project key."),
    ] = None,
) -> None:
    """Send demo traffic from an instrumented shop API through the real agent."""
    from schemas.settings import DatabaseSettings, StateSettings
    from turnstile_cli.demo import run_demo
    from turnstile_cli.demo_project import demo_keys

    key = write_key or demo_keys(StateSettings().state_dir, DatabaseSettings().dsn())["write"]
    made = asyncio.run(run_demo(gateway_url, key, rate, duration))
    typer.echo(f"demo: {made} requests sent")
