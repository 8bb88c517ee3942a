"""``turnstile alerts``: list alert rules and test-fire one through its channel.

Reads ``alert_rules`` directly (operators run it next to the database, like ``keys``);
a test-fire sends with the alerting service's own settings (TURNSTILE_ALERTING_*).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from schemas.settings import DatabaseSettings

app = typer.Typer(help="List alert rules and send test notifications.", no_args_is_help=True)
console = Console()

_LIST = """
SELECT r.rule_id, r.project_id, r.name, r.metric, r.comparator, r.threshold,
       r.window_minutes, r.channel, r.target, r.enabled, s.firing, s.value, s.evaluated_at
FROM alert_rules r LEFT JOIN alert_state s USING (rule_id)
WHERE %(project)s::text IS NULL OR r.project_id = %(project)s
ORDER BY r.project_id, r.rule_id"""
_FIELDS = ("rule_id", "project_id", "name", "metric", "comparator", "threshold",
           "window_minutes", "channel", "target", "enabled", "firing", "value", "evaluated_at")


def _connect() -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(DatabaseSettings().dsn(), autocommit=True)


def _masked(channel: str, target: str) -> str:
    """Webhook URLs and routing keys are secrets: show only their start."""
    return target if channel == "email" else target[:24] + ("…" if len(target) > 24 else "")


@app.command("list")
def list_(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (targets masked).")]
    = False,
) -> None:
    """List rules with their current state."""
    with _connect() as conn:
        rows = [dict(zip(_FIELDS, row, strict=True))
                for row in conn.execute(_LIST, {"project": project}).fetchall()]
    for row in rows:
        row["target"] = _masked(row["channel"], row["target"])
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    table = Table("id", "project", "name", "condition", "channel", "target", "enabled", "state")
    for r in rows:
        state = ("—" if r["firing"] is None
                 else ("[red]FIRING[/red]" if r["firing"] else "ok")
                 + (f" ({r['value']:.4g})" if r["value"] is not None else ""))
        table.add_row(str(r["rule_id"]), r["project_id"], r["name"],
                      f"{r['metric']} {r['comparator']} {r['threshold']:g} "
                      f"over {r['window_minutes']} min", r["channel"], r["target"],
                      "yes" if r["enabled"] else "no", state)
    console.print(table)


@app.command("test-fire")
def test_fire(rule_id: Annotated[int, typer.Argument(min=1, help="The rule's id.")]) -> None:
    """Send a notification marked TEST through the rule's channel; its state is untouched."""
    from alerting.notify import send_test_notice
    from alerting.rules import RULE_COLUMNS, Rule
    from alerting.settings import AlertingSettings

    settings = AlertingSettings()
    with psycopg.connect(settings.database.dsn(), autocommit=True) as conn:
        row = conn.execute(f"SELECT {RULE_COLUMNS} FROM alert_rules r "  # noqa: S608 - field names
                           "WHERE r.rule_id = %s", (rule_id,)).fetchone()
    if row is None:
        console.print(f"[red]no alert rule {rule_id}[/red]")
        raise typer.Exit(1)
    rule = Rule(*row)
    outcome = send_test_notice(rule, settings, datetime.now(UTC))
    if outcome.delivered:
        console.print(f"test notification for rule {rule_id} ({rule.name!r}) delivered via "
                      f"{rule.channel} after {outcome.attempts} attempt(s)")
        return
    console.print(f"[red]test notification for rule {rule_id} via {rule.channel} failed after "
                  f"{outcome.attempts} attempt(s): {outcome.error}[/red]")
    raise typer.Exit(2)
