"""``turnstile keys``: create, list and revoke project keys (the secret is printed once)."""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from schemas import keystore
from schemas.keys import KeyKind
from schemas.settings import DatabaseSettings

app = typer.Typer(
    help="Manage projects and their write, read and admin keys.", no_args_is_help=True
)
console = Console()

ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project id (tenant).")]


def _connect() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(DatabaseSettings().dsn(), autocommit=True)


@app.command()
def create(
    project: ProjectOpt,
    kind: Annotated[KeyKind, typer.Option(help="write (agents), read (dashboards), admin.")],
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create a key (and the project if it is new). The secret is shown only now."""
    with _connect() as conn:
        keystore.create_project(conn, project)
        new = keystore.create_key(conn, project, kind, name)
    console.print(f"key_id  {new.info.key_id}\nkind    {new.info.kind}\nproject {project}")
    console.print(f"secret  [bold]{new.secret}[/bold]  (store it now: it is not kept)")


@app.command("list")
def list_(project: ProjectOpt) -> None:
    """List a project's keys (prefix only, never the secret)."""
    with _connect() as conn:
        keys = keystore.list_keys(conn, project)
    table = Table("key_id", "kind", "name", "prefix", "created", "revoked")
    for k in keys:
        table.add_row(
            k.key_id, k.kind, k.name, k.prefix + "…", f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    console.print(table)


@app.command()
def revoke(project: ProjectOpt, key_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a key; services refuse it within their key-cache TTL."""
    with _connect() as conn:
        if not keystore.revoke_key(conn, project, key_id):
            console.print(f"[red]no active key {key_id} in project {project}[/red]")
            raise typer.Exit(1)
    console.print(f"revoked {key_id}")
