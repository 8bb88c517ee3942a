"""``turnstile speed``: run the speed layer.

Settings come from ``TURNSTILE_SPEED_*`` (plus the shared Kafka/database/state sections);
the options below override the most common ones.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

app = typer.Typer(
    help="Speed layer: 1-minute windows from Kafka into PostgreSQL.",
    invoke_without_command=True,
)


@app.callback()
def speed(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option("-w", "--workers", help="Worker threads.")] = 1,
    process_id: Annotated[
        int | None, typer.Option("-i", "--process-id", help="This process in a cluster.")
    ] = None,
    addresses: Annotated[
        str | None, typer.Option("-a", "--addresses", help="host:port;host:port of all processes.")
    ] = None,
    stop_at_end: Annotated[
        bool, typer.Option("--stop-at-end", help="Exit once every partition is caught up.")
    ] = False,
) -> None:
    """Run the dataflow (unless a sub-command is given)."""
    if ctx.invoked_subcommand is not None:
        return
    from speed_layer.runner import run
    from speed_layer.settings import SpeedSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    overrides: dict[str, object] = {"workers": workers}
    if stop_at_end:
        overrides["stop_at_end"] = True
    settings = SpeedSettings(**overrides)  # type: ignore[arg-type]
    run(settings, workers=workers, process_id=process_id,
        addresses=addresses.split(";") if addresses else None)
