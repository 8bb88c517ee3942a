"""``/api/v1/alerts``: alert rules (admin key) and their firings and resolutions (read key).

Rules hold notification secrets (webhook URLs, routing keys), so only admins see them.
They are evaluated by ``turnstile alerting`` (see ``alerting/``); metrics, comparators and
channels are closed lists, and a target must pass the alerting policy
(``schemas.alerts.AlertTargetPolicy``: URL prefixes, Slack prefix, PagerDuty routing key).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

import schemas.alerts as vocab
from query_api.deps import AdminKey, ConnDep, ReadKey, SettingsDep
from query_api.guards import StorableText
from query_api.problems import ProblemError
from schemas.alerts import (
    AlertTargetPolicy,
    ChangeMode,
    Channel,
    Comparator,
    Direction,
    Metric,
    RuleType,
    Scope,
)

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
RuleIdPath = Annotated[int, Path(ge=1, le=2**63 - 1, description="The rule")]
INT4_MAX = 2**31 - 1

_COLUMNS = ("name", "rule_type", "scope", "metric", "comparator", "threshold",
            "window_minutes", "min_requests", "cooldown_minutes", "direction", "change_mode",
            "baseline_days", "endpoint", "api_key", "method", "channel", "target", "enabled")
# A rule's state over its members: firing if any is, the members firing, the value of a
# rule without fan-out.
_RULE = sql.SQL(
    "SELECT r.rule_id, {cols}, r.created_at, r.updated_at, s.firing, s.value, s.since, "
    "s.evaluated_at, coalesce(s.firing_members, '{{}}') AS firing_members "
    "FROM alert_rules r LEFT JOIN LATERAL ("
    " SELECT bool_or(firing) AS firing, max(value) FILTER (WHERE member = '') AS value,"
    " max(since) AS since, max(evaluated_at) AS evaluated_at,"
    " array_agg(member ORDER BY member) FILTER (WHERE firing AND member <> '')"
    " AS firing_members FROM alert_state WHERE rule_id = r.rule_id"
    " HAVING count(*) > 0) s ON true "
    "WHERE r.project_id = %s"
).format(cols=sql.SQL(", ").join(sql.Identifier("r", c) for c in _COLUMNS))


class RuleRequest(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{
        "name": "checkout errors", "metric": "error_rate", "comparator": ">",
        "threshold": 0.05, "window_minutes": 5, "endpoint": "/checkout", "channel": "webhook",
        "target": "https://hooks.example.com/turnstile"}]}}

    name: StorableText = Field(min_length=1, max_length=200)
    rule_type: RuleType = Field(default="threshold", description=(
        "threshold | dynamic (k sd from the rolling hourly mean) | rate_of_change (window vs "
        "the one before) | volume (requests vs the same window last week) | quota (share of "
        "the monthly quota used) | quota_forecast (hours until the quota is used up)"))
    scope: Scope = Field(default="rule", description=(
        "rule: one state; each_endpoint / each_api_key: one state per member, named in "
        "the notification"))
    metric: Metric | None = Field(default=None, description=(
        "rates are fractions (0.05 = 5 %), latencies in ms; request_count for volume and "
        "quota rules"))
    comparator: Comparator | None = Field(default=None, description="threshold rules only")
    threshold: float | None = Field(default=None, allow_inf_nan=False, description=(
        "threshold: the limit; dynamic: k sd (2); rate_of_change: 0.5 = 50 % (or the "
        "absolute change); volume: 0.5 = 50 % of last week; quota: 0.8 = 80 %; "
        "quota_forecast: hours (24)"))
    window_minutes: int | None = Field(default=None, ge=1, le=60,
                                       description="5; 60 for volume and quota_forecast")
    direction: Direction | None = Field(default=None, description=(
        "dynamic, rate_of_change, volume: up, down or either"))
    change_mode: ChangeMode = "percent"
    baseline_days: int = Field(default=7, ge=1, le=28, description="dynamic rules")
    min_requests: int = Field(default=vocab.DEFAULT_MIN_REQUESTS, ge=0, le=INT4_MAX,
                              description="needed for rates and latencies")
    cooldown_minutes: int = Field(default=vocab.DEFAULT_COOLDOWN_MINUTES, ge=0, le=1440)
    endpoint: StorableText | None = Field(default=None, min_length=1, max_length=512)
    api_key: StorableText | None = Field(default=None, min_length=1, max_length=128)
    method: StorableText | None = Field(default=None, min_length=1, max_length=16)
    channel: Channel
    target: StorableText = Field(min_length=1, max_length=2048,
                        description="Slack/webhook URL, or a PagerDuty routing key")
    enabled: bool = True


class RuleItem(RuleRequest):
    rule_id: int
    firing_members: list[str] = Field(description="fan-out members firing now")
    created_at: datetime
    updated_at: datetime
    firing: bool | None = Field(description="null until the rule was first evaluated")
    value: float | None
    since: datetime | None
    evaluated_at: datetime | None


class CreatedRule(RuleItem):
    signing_secret: str = Field(description="HMAC-SHA256 key of the rule's webhook "
                                "signatures (Turnstile-Signature); shown only now")


class AlertEvent(BaseModel):
    event_id: int
    rule_id: int
    rule_name: str
    kind: str
    value: float | None
    threshold: float = Field(allow_inf_nan=False)
    window_start: datetime
    window_end: datetime
    at: datetime
    delivery: str
    attempts: int
    member: str = Field(description="the endpoint or API key of a fan-out rule ('' if none)")
    detail: dict[str, Any] = Field(description="baseline, previous window, forecast...")


class FiringAlert(BaseModel):
    rule_id: int
    rule_name: str
    rule_type: str
    metric: str
    scope: str
    member: str
    value: float | None
    since: datetime


def _checked(body: RuleRequest, policy: AlertTargetPolicy) -> dict[str, Any]:
    problem = policy.problem(body.channel, body.target)
    if problem is not None:
        raise ProblemError(400, "Invalid alert target", f"target: {body.channel} needs {problem}",
                           invalid_params=[("target", f"must be {problem}")])
    rule = vocab.with_type_defaults(body.model_dump())
    problems = vocab.rule_problems(rule)
    if problems:
        raise ProblemError(400, "Invalid alert rule", "; ".join(
            f"{name}: {why}" for name, why in problems), invalid_params=problems)
    return {**rule, "method": body.method.upper() if body.method else None}


def _one(conn: Any, project_id: str, rule_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_RULE + sql.SQL(" AND r.rule_id = %s"), (project_id, rule_id)).fetchone()
    if row is None:  # another project's rule is as absent as a deleted one
        raise ProblemError(404, "Not found", f"no alert rule {rule_id}",
                           invalid_params=[("rule_id", "no such rule in this project")])
    return dict(row)


@router.get("/rules", response_model=list[RuleItem])
def list_rules(key: AdminKey, conn: ConnDep) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(_RULE + sql.SQL(" ORDER BY r.rule_id"), (key.project_id,)))


@router.post("/rules", response_model=CreatedRule, status_code=201)
def create_rule(key: AdminKey, conn: ConnDep, settings: SettingsDep,
                body: RuleRequest) -> dict[str, Any]:
    rule = _checked(body, settings.alert_targets)
    row = conn.execute(
        sql.SQL("INSERT INTO alert_rules (project_id, {cols}) VALUES (%s, {marks}) "
                "RETURNING rule_id, signing_secret").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
            marks=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS))),
        (key.project_id, *(rule[c] for c in _COLUMNS))).fetchone()
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns the row
    return {**_one(conn, key.project_id, row[0]), "signing_secret": row[1]}


@router.put("/rules/{rule_id}", response_model=RuleItem)
def replace_rule(key: AdminKey, conn: ConnDep, settings: SettingsDep, rule_id: RuleIdPath,
                 body: RuleRequest) -> dict[str, Any]:
    """Replace a rule; its state starts afresh (the next round evaluates it anew)."""
    rule = _checked(body, settings.alert_targets)
    with conn.transaction():
        updated = conn.execute(
            sql.SQL("UPDATE alert_rules SET ({cols}, updated_at) = ({marks}, now()) "
                    "WHERE project_id = %s AND rule_id = %s").format(
                cols=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
                marks=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS))),
            (*(rule[c] for c in _COLUMNS), key.project_id, rule_id)).rowcount
        if updated:
            conn.execute("DELETE FROM alert_state WHERE rule_id = %s", (rule_id,))
    return _one(conn, key.project_id, rule_id)


@router.delete("/rules/{rule_id}", status_code=204)
def delete_rule(key: AdminKey, conn: ConnDep, rule_id: RuleIdPath) -> Response:
    deleted = conn.execute("DELETE FROM alert_rules WHERE project_id = %s AND rule_id = %s",
                           (key.project_id, rule_id)).rowcount
    if not deleted:
        raise ProblemError(404, "Not found", f"no alert rule {rule_id}",
                           invalid_params=[("rule_id", "no such rule in this project")])
    return Response(status_code=204)


@router.get("/events", response_model=list[AlertEvent])
def list_events(key: ReadKey, conn: ConnDep,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                start: Annotated[datetime | None, Query(description="at or after")] = None,
                end: Annotated[datetime | None, Query(description="before")] = None,
                ) -> list[dict[str, Any]]:
    """The newest firings and resolutions first, with how their delivery went.

    ``start``/``end`` bound them in time (the dashboard's chart markers).
    """
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(
            "SELECT e.event_id, e.rule_id, r.name AS rule_name, e.kind, e.value, e.threshold,"
            " e.window_start, e.window_end, e.at, e.delivery, e.attempts, e.member, e.detail"
            " FROM alert_events e JOIN alert_rules r USING (rule_id)"
            " WHERE e.project_id = %s AND (%s::timestamptz IS NULL OR e.at >= %s)"
            " AND (%s::timestamptz IS NULL OR e.at < %s)"
            " ORDER BY e.at DESC, e.event_id DESC LIMIT %s",
            (key.project_id, start, start, end, end, limit)))


@router.get("/firing", response_model=list[FiringAlert])
def list_firing(key: ReadKey, conn: ConnDep) -> list[dict[str, Any]]:
    """What fires now, one row per rule member, without the rules' targets (any read key)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(
            "SELECT r.rule_id, r.name AS rule_name, r.rule_type, r.metric, r.scope, s.member,"
            " s.value, s.since FROM alert_state s JOIN alert_rules r USING (rule_id)"
            " WHERE r.project_id = %s AND r.enabled AND s.firing"
            " ORDER BY s.since DESC, r.rule_id, s.member", (key.project_id,)))
