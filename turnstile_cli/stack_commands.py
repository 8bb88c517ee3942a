"""``turnstile stack up|down|status|restart|supervise``: the local servers and the platform.

Ports come from the options, then the environment (``TURNSTILE_STACK_*``), then what the
last ``up`` recorded in the state folder, then the defaults (19092/19093/15432; services
8080/8090 and ops ports 9101–9104).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.markup import escape
from rich.table import Table

from schemas.ingest_wire import CONSUMER_HASH_KEY_ENV, INGEST_BATCH_PATH
from schemas.keystore import consumer_hash_key
from schemas.migrate import migrate
from schemas.settings import KafkaSettings, StateSettings
from turnstile_cli.demo_project import DEMO_PROJECT, demo_keys
from turnstile_cli.output import console
from turnstile_cli.stack import LocalStack, StackConfig, StackError
from turnstile_cli.stack.launcher import ensure_supervisor, stop_services, wait_services_started
from turnstile_cli.stack.plan import ServicePlan, load_plan
from turnstile_cli.stack.process import wait_until
from turnstile_cli.stack.restart_policy import RestartPolicy
from turnstile_cli.stack.servers import DATABASE_ENV, KAFKA_ENV
from turnstile_cli.stack.services import (
    ALERTING_OPS_PORT,
    BILLING_OPS_PORT,
    GATEWAY_PORT,
    LAKE_OPS_PORT,
    QUERY_PORT,
    SPEED_OPS_PORT,
    ServicePorts,
    platform_services,
)
from turnstile_cli.stack.status import ComponentRow, collect_status, probe, supervisor_pid
from turnstile_cli.stack.supervisor import supervise as run_supervisor
from turnstile_cli.stack.supervisor_state import request, restart_request

app = typer.Typer(help="Run the local servers and the supervised platform services.",
                  no_args_is_help=True)
_console = console()
if not _console.is_terminal:  # rich assumes 80 columns for pipes and would cut addresses
    _console.width = 240

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


def _port(flag: str, env: str, what: str) -> object:
    return typer.Option(flag, envvar=env, help=what)


GatewayPort = Annotated[int, _port("--gateway-port", "TURNSTILE_STACK_GATEWAY_PORT",
                                   "Gateway HTTP port.")]
QueryPort = Annotated[int, _port("--query-port", "TURNSTILE_STACK_QUERY_PORT",
                                 "Query API HTTP port.")]
SpeedOpsPort = Annotated[int, _port("--speed-ops-port", "TURNSTILE_STACK_SPEED_OPS_PORT",
                                    "Speed layer ops port (/healthz /readyz /metrics).")]
LakeOpsPort = Annotated[int, _port("--lake-ops-port", "TURNSTILE_STACK_LAKE_OPS_PORT",
                                   "Lake writer ops port.")]
BillingOpsPort = Annotated[int, _port("--billing-ops-port", "TURNSTILE_STACK_BILLING_OPS_PORT",
                                      "Billing scheduler ops port.")]
AlertingOpsPort = Annotated[int, _port("--alerting-ops-port",
                                       "TURNSTILE_STACK_ALERTING_OPS_PORT",
                                       "Alerting ops port.")]
RestartBackoff = Annotated[float, _port("--restart-backoff", "TURNSTILE_STACK_RESTART_BACKOFF",
                                        "First restart delay in s (doubles up to 60 s).")]
MaxFailures = Annotated[int, _port("--max-failures", "TURNSTILE_STACK_MAX_FAILURES",
                                   "Exits within 5 minutes that mark a service failed.")]


@app.command()
def up(
    state_dir: StateDirOption = None,
    kafka_port: KafkaPortOption = None,
    kafka_controller_port: ControllerPortOption = None,
    postgres_port: PostgresPortOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each server.")] = 90.0,
    services: Annotated[bool, typer.Option(
        "--services/--no-services",
        help="Also migrate and start the supervisor, which runs gateway, speed layer, lake "
             "writer, billing, query API and alerting.",
    )] = False,
    demo_rate: Annotated[float, typer.Option(
        help="With --services: demo traffic in requests/s (0 = none).")] = 0.0,
    gateway_port: GatewayPort = GATEWAY_PORT,
    query_port: QueryPort = QUERY_PORT,
    speed_ops_port: SpeedOpsPort = SPEED_OPS_PORT,
    lake_ops_port: LakeOpsPort = LAKE_OPS_PORT,
    billing_ops_port: BillingOpsPort = BILLING_OPS_PORT,
    alerting_ops_port: AlertingOpsPort = ALERTING_OPS_PORT,
    restart_backoff: RestartBackoff = 1.0,
    max_failures: MaxFailures = 5,
) -> None:
    """Start Kafka and PostgreSQL (unless running or given by env) and create the topics."""
    stack = _stack(state_dir, kafka_port, kafka_controller_port, postgres_port)
    try:
        stack.up(KafkaSettings(), timeout=timeout)
    except StackError as exc:
        _console.print(f"[red]stack up failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    if services:
        ports = ServicePorts(gateway_port, query_port, speed_ops_port, lake_ops_port,
                             billing_ops_port, alerting_ops_port)
        try:
            policy = RestartPolicy(initial_backoff_s=restart_backoff, max_failures=max_failures)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        _start_services(stack, demo_rate, ports, policy)
    rows = collect_status(stack)
    _print(rows)
    _console.print(f"TURNSTILE_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}")
    _console.print(f"TURNSTILE_DATABASE_URL={stack.database_url}")
    if services:
        _print_demo(stack, gateway_port, query_port)
    if not all(row.ok for row in rows):
        raise typer.Exit(1)


def _print_demo(stack: LocalStack, gateway_port: int, query_port: int) -> None:
    """Where everything is and the demo project's keys (the README's examples use them)."""
    keys = demo_keys(stack.config.state_dir, stack.database_url)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        hash_key = consumer_hash_key(conn, DEMO_PROJECT)
    lines = (
        f"gateway    http://127.0.0.1:{gateway_port}{INGEST_BATCH_PATH}"
        f"  (demo write key {keys['write']})",
        f"dashboard  http://127.0.0.1:{query_port}/  (demo read key {keys['read']})",
        f"admin      demo admin key {keys['admin']}  (keys, quotas, alert rules)",
        f"API docs   http://127.0.0.1:{query_port}/docs",
        f"agents     {CONSUMER_HASH_KEY_ENV}={hash_key}  (the demo project's consumer hash key)",
    )
    for line in lines:
        _console.print(line, highlight=False, soft_wrap=True)


def _start_services(stack: LocalStack, demo_rate: float, ports: ServicePorts,
                    policy: RestartPolicy) -> None:
    """Migrate, create the demo project, then have the supervisor run every service."""
    migrate(stack.database_url)
    demo_keys(stack.config.state_dir, stack.database_url)
    state_dir = stack.config.state_dir
    plan = ServicePlan(tuple(platform_services(state_dir, demo_rate=demo_rate or None,
                                               ports=ports)), policy, ports)
    since = time.time()
    ensure_supervisor(state_dir, plan, {KAFKA_ENV: stack.kafka_bootstrap,
                                        DATABASE_ENV: stack.database_url})
    wait_services_started(state_dir, since, timeout=30.0)
    urls = [service.live_url for service in plan.services if service.live_url]
    # The HTTP APIs take a few seconds to answer.
    wait_until(lambda: all(probe(url) == "ready" for url in urls), 60.0, interval=0.5)


@app.command()
def down(
    state_dir: StateDirOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 30.0,
) -> None:
    """Stop the supervisor, then the platform services, then the local servers."""
    stack = _stack(state_dir, None, None, None)
    if stack.config.state_dir.exists():
        stop_services(stack.config.state_dir, timeout=min(timeout, 20.0))
    stack.down(timeout=timeout)
    _print(collect_status(stack))


@app.command()
def status(
    state_dir: StateDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Every expected component's state, PID, restarts, uptime, health and last error.

    Exits 1 when any expected component is not running (or a server does not answer).
    """
    rows = collect_status(_stack(state_dir, None, None, None))
    if as_json:
        typer.echo(json.dumps({"ok": all(r.ok for r in rows),
                               "components": [r.to_json() for r in rows]}, indent=2))
    else:
        _print(rows)
    if not all(row.ok for row in rows):
        raise typer.Exit(1)


@app.command()
def restart(
    name: Annotated[str, typer.Argument(help="Service to restart (see `stack status`).")],
    state_dir: StateDirOption = None,
) -> None:
    """Restart one service now, forgetting its failures (also revives a `failed` one)."""
    folder = _stack(state_dir, None, None, None).config.state_dir
    plan = load_plan(folder)
    if plan is None or name not in plan.names():
        known = ", ".join(plan.names()) if plan else "none: run `turnstile stack up --services`"
        _console.print(f"[red]no service {escape(name)!r}[/red] (services: {escape(known)})")
        raise typer.Exit(2)
    if supervisor_pid(folder) is None:
        _console.print("[red]the supervisor is not running[/red]: "
                       "`turnstile stack up --services` starts it (and every service)")
        raise typer.Exit(1)
    request(folder, restart_request(name))
    _console.print(f"restart of {escape(name)} asked; `turnstile stack status` shows it")


@app.command(hidden=True)
def supervise(
    state_dir: Annotated[Path, typer.Option("--state-dir", help="State folder.")],
) -> None:
    """Run the supervisor in the foreground (``stack up --services`` starts it detached)."""
    raise typer.Exit(run_supervisor(state_dir.resolve()))


def _stack(
    state_dir: Path | None, kafka_port: int | None, controller_port: int | None,
    postgres_port: int | None,
) -> LocalStack:
    config = StackConfig.load(
        state_dir or StateSettings().state_dir, kafka_port=kafka_port,
        kafka_controller_port=controller_port, postgres_port=postgres_port,
    )
    return LocalStack(config)


_STATE_STYLE = {"running": "green", "restarting": "yellow", "failed": "red", "stopped": "red"}


def _print(rows: list[ComponentRow]) -> None:
    table = Table()
    for column in ("component", "state", "pid", "restarts", "uptime", "health", "address",
                   "last error"):
        table.add_column(column, no_wrap=column != "last error")  # addresses stay copy-pastable
    for row in rows:
        style = _STATE_STYLE[row.state] if row.ok or row.state != "running" else "red"
        state = f"[{style}]{row.state}[/{style}]" + (f" ({escape(row.note)})" if row.note else "")
        health = row.health if row.health in ("ready", "-") else f"[red]{row.health}[/red]"
        table.add_row(row.component, state, str(row.pid or "-"),
                      "-" if row.restarts is None else str(row.restarts), _duration(row.uptime_s),
                      health, escape(row.address), escape(row.last_error or "-"))
    _console.print(table)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
