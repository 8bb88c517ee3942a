"""The one ``turnstile`` command: a sub-command per service and per job.

Each component owns its sub-command module and keeps heavy imports inside its commands;
this file only wires them together so that ``turnstile --help`` lists everything.
"""

from __future__ import annotations

import typer

from alerting.cli import alerting
from batch_layer.cli import billing_app, lake_app
from ingest_gateway.cli import gateway
from query_api.cli import query
from speed_layer.cli import app as speed_app
from turnstile_cli import (
    alerts_commands,
    db_commands,
    demo_commands,
    keys_commands,
    stack_commands,
)
from turnstile_cli.loadgen import cli as loadgen_cli

app = typer.Typer(
    name="turnstile",
    help="Turnstile: self-hosted API analytics and usage metering.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(stack_commands.app, name="stack")
app.add_typer(db_commands.app, name="db")
app.add_typer(keys_commands.app, name="keys")
app.command("gateway")(gateway)
app.add_typer(speed_app, name="speed")
app.add_typer(lake_app, name="lake")
app.add_typer(billing_app, name="billing")
app.command("query")(query)
app.command("alerting")(alerting)
app.add_typer(alerts_commands.app, name="alerts")
app.command("demo")(demo_commands.demo)
app.command("loadgen")(loadgen_cli.loadgen)


if __name__ == "__main__":  # pragma: no cover
    app()
