"""The one ``turnstile`` command: a sub-command per service and per job.

Each component owns its sub-command module; this file only wires them together so that
``turnstile --help`` lists everything. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import typer

from turnstile_cli import db_commands, stack_commands

app = typer.Typer(
    name="turnstile",
    help="Turnstile: self-hosted API analytics and usage metering.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(stack_commands.app, name="stack")
app.add_typer(db_commands.app, name="db")


if __name__ == "__main__":  # pragma: no cover
    app()
