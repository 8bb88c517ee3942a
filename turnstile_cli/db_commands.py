"""``turnstile db migrate|status|refresh|policies``: the schema and TimescaleDB's jobs.

The DSN comes from ``--database-url``, else ``TURNSTILE_DATABASE_URL``, else the local
stack's default (port 15432).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from schemas.settings import DatabaseSettings
from turnstile_cli.output import console

app = typer.Typer(help="Apply and inspect the database schema.", no_args_is_help=True)
_console = console()

DatabaseUrlOption = Annotated[
    str | None, typer.Option("--database-url", help="libpq URL; default TURNSTILE_DATABASE_URL.")
]


@app.command()
def migrate(database_url: DatabaseUrlOption = None) -> None:
    """Apply pending migrations, then the TURNSTILE_METRICS_* compression/retention settings.

    Safe to run twice, or from several processes at once.
    """
    import psycopg

    from schemas.metric_policies import MetricPolicySettings, apply_policies
    from schemas.migrate import MigrationError
    from schemas.migrate import migrate as run_migrations

    dsn = _dsn(database_url)
    try:
        applied = run_migrations(dsn)
    except MigrationError as exc:
        _console.print(f"[red]migrate failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    for migration in applied:
        _console.print(f"applied {migration.filename}")
    _console.print(f"{len(applied)} migration(s) applied; schema is up to date")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for change in apply_policies(conn, MetricPolicySettings()):
            _console.print(f"policy: {change}")


@app.command()
def status(database_url: DatabaseUrlOption = None) -> None:
    """List migrations and whether each is applied; exits 1 when any is pending or changed."""
    from schemas.migrate import status as migration_status

    rows = migration_status(_dsn(database_url))
    table = Table("version", "name", "state", "applied at")
    for row in rows:
        colour = {"applied": "green", "pending": "yellow"}.get(row.state, "red")
        table.add_row(f"{row.version:04d}", row.name, f"[{colour}]{row.state}[/{colour}]",
                      row.applied_at.isoformat(timespec="seconds") if row.applied_at else "-")
    _console.print(table)
    if any(row.state in ("pending", "changed") for row in rows):
        raise typer.Exit(1)


@app.command()
def refresh(
    start: Annotated[str | None, typer.Option(help="ISO time; default: the beginning.")] = None,
    end: Annotated[str | None, typer.Option(
        help="ISO time; default: now less each policy's end offset.")] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Materialize the continuous aggregates over a range (after a backfill or a replay).

    For minutes older than the refresh policies look back (3 days for hours).
    """
    from datetime import datetime

    import psycopg

    from schemas.metric_policies import refresh_aggregates

    with psycopg.connect(_dsn(database_url), autocommit=True) as conn:
        refresh_aggregates(conn, datetime.fromisoformat(start) if start else None,
                           datetime.fromisoformat(end) if end else None)
    _console.print("continuous aggregates refreshed")


@app.command()
def policies(database_url: DatabaseUrlOption = None) -> None:
    """TimescaleDB's jobs (aggregate refreshes, compression, retention) and their last run."""
    import psycopg

    from schemas.metric_policies import jobs

    with psycopg.connect(_dsn(database_url), autocommit=True) as conn:
        rows = jobs(conn)
    table = Table("job", "table", "procedure", "every", "config", "last run", "last success",
                  "failures")
    for job_id, name, proc, every, config, status, success, failures in rows:
        colour = "green" if status == "Success" else "red"
        table.add_row(str(job_id), name or "-", proc, str(every),
                      ", ".join(f"{k}={v}" for k, v in (config or {}).items()
                                if not k.endswith("_id")),
                      f"[{colour}]{status}[/{colour}]" if status else "-",
                      success.isoformat(timespec="seconds") if success else "-",
                      str(failures if failures is not None else "-"))
    _console.print(table)


def _dsn(database_url: str | None) -> str:
    return database_url or DatabaseSettings().dsn()
