"""``turnstile stack up|down|status``: the local Kafka broker and PostgreSQL server.

Ports come from the options, then the environment (``TURNSTILE_STACK_*``), then what the
last ``up`` recorded in the state folder, then the defaults (19092/19093/15432).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from schemas.settings import KafkaSettings, StateSettings
from turnstile_cli.stack import ComponentStatus, LocalStack, StackConfig, StackError

app = typer.Typer(help="Run the local Kafka broker and PostgreSQL server.", no_args_is_help=True)
_console = Console()
if not _console.is_terminal:  # rich assumes 80 columns for pipes and would cut addresses
    _console.width = 200

StateDirOption = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar="TURNSTILE_STATE_DIR",
                 help="State folder (default .turnstile)."),
]
KafkaPortOption = Annotated[
    int | None, typer.Option("--kafka-port", envvar="TURNSTILE_STACK_KAFKA_PORT")
]
ControllerPortOption = Annotated[
    int | None,
    typer.Option("--kafka-controller-port", envvar="TURNSTILE_STACK_KAFKA_CONTROLLER_PORT"),
]
PostgresPortOption = Annotated[
    int | None, typer.Option("--postgres-port", envvar="TURNSTILE_STACK_POSTGRES_PORT")
]


@app.command()
def up(
    state_dir: StateDirOption = None,
    kafka_port: KafkaPortOption = None,
    kafka_controller_port: ControllerPortOption = None,
    postgres_port: PostgresPortOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each server.")] = 90.0,
) -> None:
    """Start Kafka and PostgreSQL (unless running or given by env) and create the topics."""
    stack = _stack(state_dir, kafka_port, kafka_controller_port, postgres_port)
    try:
        rows = stack.up(KafkaSettings(), timeout=timeout)
    except StackError as exc:
        _console.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    _print(rows)
    _console.print(f"TURNSTILE_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}")
    _console.print(f"TURNSTILE_DATABASE_URL={stack.database_url}")
    if not all(row.healthy for row in rows):
        raise typer.Exit(1)


@app.command()
def down(
    state_dir: StateDirOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 30.0,
) -> None:
    """Stop the local servers of the state folder."""
    _print(_stack(state_dir, None, None, None).down(timeout=timeout))


@app.command()
def status(state_dir: StateDirOption = None) -> None:
    """Show each component's PID, address and health; exits 1 when one is unhealthy."""
    rows = _stack(state_dir, None, None, None).status()
    _print(rows)
    if not all(row.healthy for row in rows):
        raise typer.Exit(1)


def _stack(
    state_dir: Path | None, kafka_port: int | None, controller_port: int | None,
    postgres_port: int | None,
) -> LocalStack:
    config = StackConfig.load(
        state_dir or StateSettings().state_dir, kafka_port=kafka_port,
        kafka_controller_port=controller_port, postgres_port=postgres_port,
    )
    return LocalStack(config)


def _print(rows: list[ComponentStatus]) -> None:
    table = Table()
    for column in ("component", "pid", "address", "health", "log"):
        table.add_column(column, no_wrap=True)  # addresses must stay copy-pastable
    for row in rows:
        health = "[green]healthy[/green]" if row.healthy else (
            "[red]down[/red]" if row.pid is None and row.managed else "[red]unhealthy[/red]")
        table.add_row(row.component, str(row.pid or "-"), row.address, health,
                      str(row.log or "-"))
    _console.print(table)
