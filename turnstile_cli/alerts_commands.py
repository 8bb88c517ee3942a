"""``turnstile alerts``: create, list, enable/disable, delete and test-fire alert rules.

Reads and writes ``alert_rules`` directly (operators run it next to the database, like
``keys``), checking a new rule as the query API does (``schemas.alerts``); a test-fire
sends with the alerting service's own settings (TURNSTILE_ALERTING_*).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, get_args

import psycopg
import typer
from rich.console import Console
from rich.table import Table

import schemas.alerts as vocab
from schemas.settings import DatabaseSettings

app = typer.Typer(help="Manage alert rules and send test notifications.", no_args_is_help=True)
console = Console()

_LIST = """
SELECT r.rule_id, r.project_id, r.name, r.rule_type, r.scope, r.metric, r.comparator,
       r.threshold, r.window_minutes, r.direction, r.channel, r.target, r.enabled,
       s.firing, s.value, s.evaluated_at, coalesce(s.members, '{}')
FROM alert_rules r LEFT JOIN LATERAL (
    SELECT bool_or(firing) AS firing, max(value) FILTER (WHERE member = '') AS value,
           max(evaluated_at) AS evaluated_at,
           array_agg(member ORDER BY member) FILTER (WHERE firing AND member <> '') AS members
    FROM alert_state WHERE rule_id = r.rule_id HAVING count(*) > 0) s ON true
WHERE %(project)s::text IS NULL OR r.project_id = %(project)s
ORDER BY r.project_id, r.rule_id"""
_FIELDS = ("rule_id", "project_id", "name", "rule_type", "scope", "metric", "comparator",
           "threshold", "window_minutes", "direction", "channel", "target", "enabled",
           "firing", "value", "evaluated_at", "firing_members")
_CREATE = ("project_id", "name", "rule_type", "scope", "metric", "comparator", "threshold",
           "window_minutes", "min_requests", "cooldown_minutes", "direction", "change_mode",
           "baseline_days", "endpoint", "api_key", "method", "channel", "target")


def _connect() -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(DatabaseSettings().dsn(), autocommit=True)


def _masked(channel: str, target: str) -> str:
    """Webhook URLs and routing keys are secrets: show only their start."""
    return target if channel == "email" else target[:24] + ("…" if len(target) > 24 else "")


def _condition(r: dict[str, Any]) -> str:
    over = f"over {r['window_minutes']} min"
    each = {"each_endpoint": " per endpoint", "each_api_key": " per API key"}.get(r["scope"], "")
    kind = r["rule_type"]
    if kind == "threshold":
        text = f"{r['metric']} {r['comparator']} {r['threshold']:g} {over}"
    elif kind == "dynamic":
        text = f"{r['metric']} {r['threshold']:g} sd {r['direction']} of its mean {over}"
    elif kind == "rate_of_change":
        text = f"{r['metric']} {r['direction']} > {r['threshold']:g} vs the window before"
    elif kind == "volume":
        text = f"requests {r['direction']} {r['threshold']:g}x of last week {over}"
    elif kind == "quota":
        text = f"monthly quota >= {r['threshold']:g} used"
    else:
        text = f"monthly quota exhausted within {r['threshold']:g} h"
    return text + each


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
                 + (f" ({r['value']:.4g})" if r["value"] is not None else "")
                 + (f" {', '.join(r['firing_members'])}" if r["firing_members"] else ""))
        table.add_row(str(r["rule_id"]), r["project_id"], r["name"], _condition(r),
                      r["channel"], r["target"], "yes" if r["enabled"] else "no", state)
    console.print(table)


def _choice(name: str, value: str | None, allowed: Any) -> list[tuple[str, str]]:
    options = get_args(allowed)
    if value is None or value in options:
        return []
    return [(name, f"must be one of {', '.join(options)}")]


@app.command("create")
def create(
    project: Annotated[str, typer.Option("--project", "-p", help="The rule's project.")],
    name: Annotated[str, typer.Option(help="Shown in notifications.")],
    channel: Annotated[str, typer.Option(help="slack, pagerduty, webhook or email.")],
    target: Annotated[str, typer.Option(help="URL, routing key or addresses.")],
    rule_type: Annotated[str, typer.Option("--type", help=(
        "threshold, dynamic, rate_of_change, volume, quota or quota_forecast."))] = "threshold",
    metric: Annotated[str | None, typer.Option(help="e.g. error_rate, latency_p99.")] = None,
    comparator: Annotated[str | None, typer.Option(help="threshold rules: >, >=, <, <=.")]
    = None,
    threshold: Annotated[float | None, typer.Option(help="The type's limit (see the API).")]
    = None,
    window: Annotated[int | None, typer.Option(min=1, max=60, help="Minutes.")] = None,
    scope: Annotated[str, typer.Option(help="rule, each_endpoint or each_api_key.")] = "rule",
    direction: Annotated[str | None, typer.Option(help="up, down or either.")] = None,
    change_mode: Annotated[str, typer.Option(help="percent or absolute.")] = "percent",
    baseline_days: Annotated[int, typer.Option(min=1, max=28)] = 7,
    min_requests: Annotated[int, typer.Option(min=0)] = vocab.DEFAULT_MIN_REQUESTS,
    cooldown: Annotated[int, typer.Option(min=0, max=1440, help="Minutes.")]
    = vocab.DEFAULT_COOLDOWN_MINUTES,
    endpoint: Annotated[str | None, typer.Option()] = None,
    api_key: Annotated[str | None, typer.Option()] = None,
    method: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a rule, checked as the query API checks it; prints its id."""
    rule: dict[str, Any] = vocab.with_type_defaults({
        "project_id": project, "name": name, "rule_type": rule_type, "scope": scope,
        "metric": metric, "comparator": comparator, "threshold": threshold,
        "window_minutes": window, "min_requests": min_requests, "cooldown_minutes": cooldown,
        "direction": direction, "change_mode": change_mode, "baseline_days": baseline_days,
        "endpoint": endpoint, "api_key": api_key,
        "method": method.upper() if method else None, "channel": channel, "target": target})
    problems = [*_choice("type", rule_type, vocab.RuleType),
                *_choice("scope", scope, vocab.Scope),
                *_choice("metric", metric, vocab.Metric),
                *_choice("comparator", comparator, vocab.Comparator),
                *_choice("direction", direction, vocab.Direction),
                *_choice("change-mode", change_mode, vocab.ChangeMode),
                *_choice("channel", channel, vocab.Channel)]
    if not problems:
        problems = vocab.rule_problems(rule)
        refused = vocab.AlertTargetPolicy().problem(channel, target)
        if refused is not None:
            problems.append(("target", f"must be {refused}"))
    if problems:
        for field, why in problems:
            console.print(f"[red]{field.replace('_', '-')}: {why}[/red]")
        raise typer.Exit(2)
    with _connect() as conn:
        if conn.execute("SELECT 1 FROM projects WHERE project_id = %s",
                        (project,)).fetchone() is None:
            console.print(f"[red]project: no project {project!r}[/red]")
            raise typer.Exit(2)
        row = conn.execute(
            f"INSERT INTO alert_rules ({', '.join(_CREATE)}) "  # noqa: S608 - field names
            f"VALUES ({', '.join(['%s'] * len(_CREATE))}) RETURNING rule_id",
            [rule[c] for c in _CREATE]).fetchone()
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns the row
    console.print(f"created alert rule {row[0]} ({rule_type}) in {project}")


def _set(rule_id: int, sql: str, done: str) -> None:
    with _connect() as conn:
        if not conn.execute(sql, (rule_id,)).rowcount:
            console.print(f"[red]no alert rule {rule_id}[/red]")
            raise typer.Exit(1)
    console.print(f"alert rule {rule_id} {done}")


@app.command("enable")
def enable(rule_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Evaluate the rule again from the next round."""
    _set(rule_id, "UPDATE alert_rules SET enabled = true, updated_at = now() "
         "WHERE rule_id = %s", "enabled")


@app.command("disable")
def disable(rule_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Stop evaluating the rule (its history stays)."""
    _set(rule_id, "UPDATE alert_rules SET enabled = false, updated_at = now() "
         "WHERE rule_id = %s", "disabled")


@app.command("delete")
def delete(rule_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Delete the rule, its states and its events."""
    _set(rule_id, "DELETE FROM alert_rules WHERE rule_id = %s", "deleted")


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
