"""/readyz, /metrics, the query API's own heartbeat, and /docs without any CDN."""

from __future__ import annotations

import re
import shutil
import time

import psycopg
from fastapi.testclient import TestClient

from query_api.app import create_app, create_pool
from query_api.settings import QuerySettings
from schemas.lake import LakeSettings
from schemas.settings import DatabaseSettings


def test_ready_when_postgresql_answers_and_the_lake_can_be_listed(world):
    r = world.client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"component": "query_api", "ready": True,
                        "checks": {"postgres": "ok", "lake": "ok"}}


def test_not_ready_naming_the_lake_when_its_folder_is_gone(stack, tmp_path):
    volume = tmp_path / "volume"
    lake = volume / "lake"
    app = create_app(QuerySettings(database=DatabaseSettings(url=stack.database_url),
                                   lake=LakeSettings(uri=str(lake)), pool_max_size=1))
    with TestClient(app) as client:
        volume.mkdir()
        # a lake the writer has not made yet, under a folder that exists: empty, not gone
        assert client.get("/readyz").status_code == 200
        lake.mkdir()
        assert client.get("/readyz").status_code == 200
        shutil.rmtree(volume)
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"] == {"postgres": "ok", "lake": "failing"}
        assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_not_ready_naming_postgresql_when_it_is_unreachable(stack, tmp_path):
    app = create_app(QuerySettings(database=DatabaseSettings(url=stack.database_url),
                                   lake=LakeSettings(uri=str(tmp_path)), pool_max_size=1))
    with TestClient(app) as client:
        client.app.state.pool.close()  # as good as a database that went away
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["postgres"] == "failing"
        # and a route that needs the database answers 503 problem+json, not 500
        r = client.get("/api/v1/analytics/realtime", headers=world_headers(client))
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["retry-after"]
        errors = _sample(client.get("/metrics").text, "turnstile_query_server_errors_total",
                         route="/api/v1/analytics/realtime", status="503")
        assert errors >= 1


def world_headers(_client) -> dict[str, str]:
    return {"Authorization": "Bearer tsk_r_" + "q" * 43}


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_requests_by_route_template_and_status(world):
    route = "/api/v1/quotas/{api_key}"
    before = world.client.get("/metrics").text
    for key in ("m-1", "m-2", "m-3"):
        assert world.client.get(f"/api/v1/quotas/{key}", headers=world.a.h()).status_code == 200
    world.client.get("/api/v1/quotas/x", headers={"Authorization": "Bearer nope"})
    world.client.get("/no/such/route")
    r = world.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text
    total = "turnstile_query_requests_total"
    assert _sample(after, total, route=route, status="200") - _sample(
        before, total, route=route, status="200") == 3
    assert _sample(after, total, route=route, status="401") - _sample(
        before, total, route=route, status="401") == 1
    assert _sample(after, total, route="unmatched", status="404") >= 1
    assert "/api/v1/quotas/m-1" not in after  # raw paths never become labels
    assert _sample(after, "turnstile_query_request_seconds_count", route=route) >= 4
    assert "# TYPE turnstile_query_server_errors_total counter" in after


def test_the_query_api_beats_as_a_pipeline_component(world, db):
    instance = world.client.app.state.heartbeat.instance  # other apps of the session beat too
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = db.execute(
            "SELECT state, last_success_at, details, now() - beat_at FROM pipeline_heartbeats"
            " WHERE component = 'query_api' AND instance = %s AND last_success_at IS NOT NULL",
            (instance,)).fetchone()
        if row:
            break
        time.sleep(0.5)
    assert row is not None, "no query_api heartbeat with a success"
    state, _, details, age = row
    assert state == "running" and details["requests"] >= 1 and age.total_seconds() < 15


def test_a_stopped_app_marks_its_heartbeat_stopped(stack, tmp_path):
    app = create_app(QuerySettings(database=DatabaseSettings(url=stack.database_url),
                                   lake=LakeSettings(uri=str(tmp_path)), pool_max_size=1))
    with TestClient(app):
        pass
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        states = conn.execute("SELECT state FROM pipeline_heartbeats WHERE component = "
                              "'query_api' AND started_at >= now() - interval '1 minute'"
                              ).fetchall()
    assert ("stopped",) in states


def test_docs_reference_no_external_host_and_their_assets_are_served(world):
    r = world.client.get("/docs")
    assert r.status_code == 200
    refs = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", r.text)
    assert refs, r.text
    assert not [u for u in refs if re.match(r"^(https?:)?//", u)], refs
    assets = [u for u in refs if u.startswith("/docs-assets/")]
    assert {a.rsplit("/", 1)[1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        assert world.client.get(asset).status_code == 200, asset
    assert "validatorUrl" in r.text  # no badge fetched from validator.swagger.io
    assert world.client.get("/openapi.json").status_code == 200
    redoc = world.client.get("/redoc")
    assert redoc.status_code == 200 and "fonts.googleapis" not in redoc.text
    assert not re.search(r"""src=['"](https?:)?//""", redoc.text)


def test_pool_connections_carry_the_configured_work_mem_and_timeout(stack, tmp_path):
    settings = QuerySettings(database=DatabaseSettings(url=stack.database_url),
                             lake=LakeSettings(uri=str(tmp_path)), work_mem_mb=48,
                             statement_timeout_ms=7_000, pool_max_size=1)
    pool = create_pool(settings)
    try:
        with pool.connection() as conn:
            assert conn.execute("SHOW work_mem").fetchone() == ("48MB",)
            assert conn.execute("SHOW statement_timeout").fetchone() == ("7s",)
    finally:
        pool.close()
