"""The provisioned Grafana dashboard's SQL runs against the real schema and returns rows.

Grafana cannot run here, so we do what its PostgreSQL datasource does: interpolate the
template variables, expand the macros for a time range, and execute each panel's SQL.
"""

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.integration.query_api.conftest import DAY0

GRAFANA = Path(__file__).resolve().parents[3] / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "turnstile.json").read_text())
INTERVALS = {"1m": 60, "1h": 3600, "1d": 86400}


def _seconds(text: str) -> int:
    return int(text[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]]


def expand(sql: str, variables: dict[str, str], start: datetime, end: datetime,
           interval: str) -> str:
    """Grafana's variable interpolation and PostgreSQL macros ($__timeFilter, …)."""
    sql = sql.replace("$__interval_ms", str(_seconds(interval) * 1000))
    sql = sql.replace("$__interval", interval)
    for name, value in variables.items():
        sql = sql.replace(f"${name}", value)

    def time_group(m: re.Match) -> str:
        col, step = m.group(2), _seconds(m.group(3).strip(" '"))
        expr = f"floor(extract(epoch from {col})/{step})*{step}"
        return expr + (' AS "time"' if m.group(1) == "Alias" else "")

    sql = re.sub(r"\$__timeGroup(Alias)?\(\s*(\w+)\s*,\s*([^)]+)\)", time_group, sql)
    sql = re.sub(r"\$__timeFilter\(\s*(\w+)\s*\)",
                 lambda m: f"{m.group(1)} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'",
                 sql)
    assert "$" not in sql, sql
    return sql


def test_provisioning_files_point_at_the_dashboard_and_postgres():
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/turnstile.yaml").read_text())
    assert ds["datasources"][0]["type"] == "postgres"
    uid = ds["datasources"][0]["uid"]
    assert all(p["datasource"]["uid"] == uid for p in DASHBOARD["panels"])
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/turnstile.yaml").read_text())
    assert prov["providers"][0]["type"] == "file"
    titles = " ".join(p["title"].lower() for p in DASHBOARD["panels"])
    for word in ("volume", "errors", "latency", "endpoints", "consumers"):
        assert word in titles


def test_project_variable_query_lists_projects(world, db):
    var = next(v for v in DASHBOARD["templating"]["list"] if v["name"] == "project")
    projects = {r[0] for r in db.execute(var["query"]).fetchall()}
    assert world.a.project_id in projects


@pytest.mark.parametrize(("rollup", "start", "end", "interval"), [
    ("metrics_1m", DAY0 + timedelta(hours=10), DAY0 + timedelta(hours=11), "1m"),
    ("metrics_1h", DAY0, DAY0 + timedelta(days=1), "1h"),
    ("metrics_1d", DAY0, DAY0 + timedelta(days=7), "1d"),
])
@pytest.mark.parametrize("panel", DASHBOARD["panels"], ids=lambda p: p["title"])
def test_every_panel_query_returns_rows(world, db, panel, rollup, start, end, interval):
    for target in panel["targets"]:
        sql = expand(target["rawSql"], {"project": world.a.project_id, "rollup": rollup},
                     start, end, interval)
        cur = db.execute(sql)
        rows = cur.fetchall()
        assert rows, f"{panel['title']} returned no rows:\n{sql}"
        names = [d.name for d in cur.description]
        if target["format"] == "time_series":
            assert names[0] == "time"
            assert all(v is not None for v in rows[0][1:]), rows[0]
        if "Latency" in panel["title"]:
            assert 0 < rows[0][1] <= rows[0][2] <= rows[0][3]


def test_panels_bucket_with_time_bucket_over_the_hypertable_and_its_aggregates(db):
    rollup = next(v for v in DASHBOARD["templating"]["list"] if v["name"] == "rollup")
    tables = rollup["query"].split(",")
    kinds = dict(db.execute(
        "SELECT hypertable_name, 'hypertable' FROM timescaledb_information.hypertables"
        " UNION ALL SELECT view_name, 'aggregate'"
        " FROM timescaledb_information.continuous_aggregates"
    ).fetchall())
    assert [kinds.get(t) for t in tables] == ["hypertable", "aggregate", "aggregate"]
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            assert "FROM $rollup" in target["rawSql"], panel["title"]
            if target["format"] == "time_series":
                assert "time_bucket(" in target["rawSql"], panel["title"]


@pytest.mark.parametrize("panel", [p for p in DASHBOARD["panels"]
                                   if p["targets"][0]["format"] == "table"],
                         ids=lambda p: p["title"])
def test_a_day_gives_the_same_table_whichever_level_serves_it(world, db, panel):
    """Grafana's time filter is inclusive: the day ends a minute before midnight."""
    answers = []
    for rollup in ("metrics_1m", "metrics_1h", "metrics_1d"):
        sql = expand(panel["targets"][0]["rawSql"], {"project": world.a.project_id,
                                                     "rollup": rollup},
                     DAY0, DAY0 + timedelta(days=1, minutes=-1), "1d")
        answers.append(db.execute(sql).fetchall())
    assert answers[0] and answers[0] == answers[1] == answers[2]
