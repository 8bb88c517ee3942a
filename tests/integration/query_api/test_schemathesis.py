"""schemathesis against the query API's own OpenAPI document, over real HTTP.

Every operation, valid and invalid data (positive and negative generation), authenticated
with a real read key (analytics routes) or admin key (management routes) of a seeded
project: no answer may be a 5xx, every 4xx must be problem+json (a 400 naming the
parameter at fault), and every answer must be one the document declares, in its declared
content type and schema. Bounded: at most ``MAX_EXAMPLES`` generated cases per operation,
plus the document's own examples.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from query_api.app import create_app
from query_api.deps import require_admin
from query_api.settings import QuerySettings
from schemas import keystore
from schemas.keys import KeyKind
from schemas.lake import LakeSettings
from schemas.metric_policies import refresh_aggregates
from schemas.settings import DatabaseSettings
from tests.integration.query_api.fixtures import Metric, insert_metrics, served, write_lake_file

# Generated cases per operation, valid and invalid ones together (the coverage phase is
# off: its boundary cases are hundreds per operation; test_hostile_input pins those classes).
MAX_EXAMPLES = 30
PROBLEM_JSON = "application/problem+json"


def _needs_admin(dependant) -> bool:
    return any(d.call is require_admin or _needs_admin(d) for d in dependant.dependencies)


def _api_routes(routes) -> Iterator[APIRoute]:
    """Every APIRoute, through the included routers FastAPI keeps as wrappers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


@pytest.fixture(scope="module")
def fuzz_target(stack, world, tmp_path_factory) -> Iterator[dict]:
    """A seeded project of its own (metrics, lake, billing-free) and the API on a real port."""
    lake = tmp_path_factory.mktemp("fuzz-lake")
    pid = f"fuzz-{uuid.uuid4().hex[:8]}"
    now = world.now
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        keystore.create_project(conn, pid)
        keys = {k: keystore.create_key(conn, pid, k).secret for k in (KeyKind.READ,
                                                                      KeyKind.ADMIN)}
        cur = now.replace(second=0, microsecond=0)
        insert_metrics(conn, "metrics_1m", [
            Metric(cur - timedelta(minutes=i), pid, f"c{i % 3}", "/x/{id}", "GET", 2 + i % 4,
                   [float(i + 1)] * 3) for i in range(30)])
        # older hours as minutes too: the hourly and daily levels are their aggregates
        insert_metrics(conn, "metrics_1m", [
            Metric(cur.replace(minute=0) - timedelta(hours=i), pid, "c1", "/x/{id}", "POST", 2,
                   [5.0] * 4) for i in range(1, 24)])
        refresh_aggregates(conn, cur - timedelta(days=2))
    write_lake_file(lake, pid, [
        {"event_id": f"f{i}", "timestamp": now - timedelta(minutes=i), "method": "GET",
         "endpoint": "/x/{id}", "status_code": 200 + i, "latency_ms": float(i),
         "api_key": "c1", "country": "FR"} for i in range(10)])
    app = create_app(QuerySettings(database=DatabaseSettings(url=stack.database_url),
                                   lake=LakeSettings(uri=str(lake)), pool_max_size=4))
    admin_ops = {(m, r.path) for r in _api_routes(app.routes) if _needs_admin(r.dependant)
                 for m in r.methods}
    assert ("POST", "/api/v1/alerts/rules") in admin_ops and len(admin_ops) == 10, admin_ops
    with served(app) as url:
        yield {"url": url, "read": keys[KeyKind.READ], "admin": keys[KeyKind.ADMIN],
               "admin_ops": admin_ops}


def _document() -> dict:
    """The app's OpenAPI document (building the app opens nothing: that is its lifespan)."""
    return create_app(QuerySettings()).openapi()


@schemathesis.check
def query_4xx_is_problem_json(ctx, response, case) -> bool | None:
    """A 4xx is RFC 9457 problem+json; a 400 names at least one parameter."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith(PROBLEM_JSON), f"{response.status_code} as {content_type}"
    body = response.json()
    assert body["status"] == response.status_code and body["title"], body
    if response.status_code in (400, 413):
        assert body.get("invalid_params"), f"{response.status_code} names no parameter: {body}"
    return True


# Loaded at import: schemathesis' lazy fixture loader does not run under pytest 9.
schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                max_examples=MAX_EXAMPLES)
schema.config.phases.coverage.enabled = False


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx_and_every_4xx_is_a_problem(case, fuzz_target):
    op = (case.operation.method.upper(), case.operation.path)
    key = fuzz_target["admin"] if op in fuzz_target["admin_ops"] else fuzz_target["read"]
    headers = {k: v for k, v in (case.headers or {}).items()
               if k.lower() not in ("authorization", "x-api-key")}
    case.headers = {**headers, "Authorization": f"Bearer {key}"}
    response = case.call(base_url=fuzz_target["url"])
    case.validate_response(response, checks=[
        not_a_server_error, query_4xx_is_problem_json, status_code_conformance,
        content_type_conformance, response_schema_conformance])
