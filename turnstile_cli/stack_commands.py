"""``turnstile stack up|down|status``: the local Kafka broker and PostgreSQL server.

Ports come from the options, then the environment (``TURNSTILE_STACK_*``), then what the
last ``up`` recorded in the state folder, then the defaults (19092/19093/15432).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from schemas.migrate import migrate
from schemas.settings import KafkaSettings, StateSettings
from turnstile_cli.demo_project import demo_keys
from turnstile_cli.stack import ComponentStatus, LocalStack, StackConfig, StackError
from turnstile_cli.stack.services import (
    GATEWAY_PORT,
    QUERY_PORT,
    Service,
    ServiceRunner,
    platform_services,
)

_SERVICES_FILE = "services.json"  # the ports the last `up --services` used

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
GatewayPortOption = Annotated[
    int, typer.Option("--gateway-port", envvar="TURNSTILE_STACK_GATEWAY_PORT")
]
QueryPortOption = Annotated[int, typer.Option("--query-port", envvar="TURNSTILE_STACK_QUERY_PORT")]


@app.command()
def up(
    state_dir: StateDirOption = None,
    kafka_port: KafkaPortOption = None,
    kafka_controller_port: ControllerPortOption = None,
    postgres_port: PostgresPortOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each server.")] = 90.0,
    services: Annotated[bool, typer.Option(
        "--services/--no-services",
        help="Also migrate and start gateway, speed layer, lake, billing, query API.",
    )] = False,
    demo_rate: Annotated[float, typer.Option(
        help="With --services: demo traffic in requests/s (0 = none).")] = 0.0,
    gateway_port: GatewayPortOption = GATEWAY_PORT,
    query_port: QueryPortOption = QUERY_PORT,
) -> None:
    """Start Kafka and PostgreSQL (unless running or given by env) and create the topics."""
    stack = _stack(state_dir, kafka_port, kafka_controller_port, postgres_port)
    try:
        rows = stack.up(KafkaSettings(), timeout=timeout)
    except StackError as exc:
        _console.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    if services:
        rows += _start_services(stack, demo_rate, gateway_port, query_port)
    _print(rows)
    _console.print(f"TURNSTILE_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}")
    _console.print(f"TURNSTILE_DATABASE_URL={stack.database_url}")
    if services:
        keys = demo_keys(stack.config.state_dir, stack.database_url)
        _console.print(f"gateway    http://127.0.0.1:{gateway_port}/api/v1/events/batch"
                       f"  (demo write key {keys['write']})")
        _console.print(f"dashboard  http://127.0.0.1:{query_port}/  (demo read key {keys['read']})")
        _console.print(f"API docs   http://127.0.0.1:{query_port}/docs")
    if not all(row.healthy for row in rows):
        raise typer.Exit(1)


def _start_services(
    stack: LocalStack, demo_rate: float, gateway_port: int, query_port: int
) -> list[ComponentStatus]:
    """Migrate, create the demo project, then start every platform service."""
    migrate(stack.database_url)
    demo_keys(stack.config.state_dir, stack.database_url)
    runner = _runner(stack)
    ports = {"gateway_port": gateway_port, "query_port": query_port}
    (stack.config.state_dir / _SERVICES_FILE).write_text(json.dumps(ports) + "\n")
    wanted = platform_services(stack.config.state_dir, demo_rate=demo_rate or None, **ports)
    for service in wanted:
        runner.start(service)
    for service in wanted:
        runner.wait_healthy(service)
    return [runner.status(service) for service in wanted]


def _runner(stack: LocalStack) -> ServiceRunner:
    return ServiceRunner(stack.config.state_dir, {
        "TURNSTILE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "TURNSTILE_DATABASE_URL": stack.database_url,
    })


def _services_of(stack: LocalStack) -> list[Service]:
    """Every service that may run in this state folder (the demo included)."""
    recorded = stack.config.state_dir / _SERVICES_FILE
    ports = json.loads(recorded.read_text()) if recorded.exists() else {}
    return platform_services(stack.config.state_dir, demo_rate=1.0, **ports)


@app.command()
def down(
    state_dir: StateDirOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 30.0,
) -> None:
    """Stop the platform services, then the local servers of the state folder."""
    stack = _stack(state_dir, None, None, None)
    runner = _runner(stack)
    for service in reversed(_services_of(stack)):
        runner.stop(service)
    _print(stack.down(timeout=timeout))


@app.command()
def status(state_dir: StateDirOption = None) -> None:
    """Show each component's PID, address and health; exits 1 when one is unhealthy."""
    stack = _stack(state_dir, None, None, None)
    runner = _runner(stack)
    rows = stack.status() + [runner.status(service) for service in _services_of(stack)
                             if runner.pid(service) is not None]
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
