"""``turnstile keys``: create, list and revoke project keys (the secret is printed once).

A project also has a consumer hash key (``projects.consumer_hash_key``): agents hash their
consumers' ids with it (``TURNSTILE_AGENT_CONSUMER_HASH_KEY``); ``hash-key`` prints it.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from rich.table import Table

from schemas import keystore
from schemas.ingest_wire import CONSUMER_HASH_KEY_ENV
from schemas.keys import KeyKind
from schemas.settings import DatabaseSettings
from turnstile_cli.output import console, fail, print_json

app = typer.Typer(
    help="Manage projects and their write, read and admin keys.", no_args_is_help=True
)

ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project id (tenant).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


def _connect() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(DatabaseSettings().dsn(), autocommit=True)


@app.command()
def create(
    project: ProjectOpt,
    kind: Annotated[KeyKind, typer.Option(help="write (agents), read (dashboards), admin.")],
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a key (and the project if it is new). The secret is shown only now."""
    with _connect() as conn:
        keystore.create_project(conn, project)
        new = keystore.create_key(conn, project, kind, name)
        hash_key = keystore.consumer_hash_key(conn, project) if kind is KeyKind.WRITE else None
    if as_json:
        print_json({"key_id": new.info.key_id, "kind": new.info.kind.value,
                    "project_id": project, "secret": new.secret,
                    **({"consumer_hash_key": hash_key} if hash_key else {})})
        return
    out = console()
    out.print(f"key_id  {new.info.key_id}\nkind    {new.info.kind}\nproject {project}",
              highlight=False)
    out.print(f"secret  [bold]{new.secret}[/bold]  (store it now: it is not kept)",
              highlight=False)
    if hash_key:
        out.print("the agent's environment:", highlight=False)
        out.print(f"  TURNSTILE_AGENT_WRITE_KEY={new.secret}", highlight=False)
        out.print(f"  {CONSUMER_HASH_KEY_ENV}={hash_key}", highlight=False)


@app.command("hash-key")
def hash_key(project: ProjectOpt) -> None:
    """Print the project's consumer hash key (set it as TURNSTILE_AGENT_CONSUMER_HASH_KEY)."""
    with _connect() as conn:
        key = keystore.consumer_hash_key(conn, project)
    if key is None:
        raise fail(f"no project {project!r} (create it with `turnstile keys create`)")
    typer.echo(key)


@app.command("list")
def list_(project: ProjectOpt, as_json: JsonOpt = False) -> None:
    """List a project's keys (prefix only, never the secret)."""
    with _connect() as conn:
        keys = keystore.list_keys(conn, project)
    if as_json:
        print_json([{"key_id": k.key_id, "kind": k.kind.value, "name": k.name,
                     "prefix": k.prefix, "created_at": k.created_at.isoformat(),
                     "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
                    for k in keys])
        return
    table = Table()
    # The id is what `keys revoke` takes: never cut, folded at worst on a narrow terminal.
    table.add_column("key_id", overflow="fold")
    for column in ("kind", "name", "prefix", "created", "revoked"):
        table.add_column(column)
    for k in keys:
        table.add_row(
            k.key_id, k.kind, k.name, k.prefix + "…", f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    console().print(table)


@app.command()
def revoke(project: ProjectOpt, key_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a key; services refuse it within their key-cache TTL."""
    with _connect() as conn:
        if not keystore.revoke_key(conn, project, key_id):
            raise fail(f"no active key {key_id} in project {project}")
    console().print(f"revoked {key_id}", highlight=False)
