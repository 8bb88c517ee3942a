"""schemathesis against the gateway's own OpenAPI document, over real HTTP.

Every operation, with data that fits the document and data that does not (positive and
negative generation), against a real uvicorn gateway with real Kafka and PostgreSQL and a
real write key: no answer is a 5xx, every answer's status, content type and body are the
ones the document names, and every 4xx is problem+json naming the part at fault. Bounded:
at most ``MAX_EXAMPLES`` generated cases per operation and mode.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ingest_gateway.app import create_app
from ingest_gateway.settings import GatewaySettings

MAX_EXAMPLES = 50
PROBLEM_JSON = "application/problem+json"


@schemathesis.check
def gateway_4xx_is_problem_json(ctx, response, case) -> bool | None:
    """A 4xx is RFC 9457 problem+json that names the part of the request at fault."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith(PROBLEM_JSON), f"{response.status_code} as {content_type}"
    body = response.json()
    assert body["status"] == response.status_code and body["title"] and body["detail"], body
    assert body.get("invalid_params"), f"{response.status_code} names no part: {body}"
    return True


# Loaded at import (building the app opens nothing: that is its lifespan), as the query
# API's test does: schemathesis' lazy fixture loader does not run under pytest 9.
schema = schemathesis.openapi.from_dict(create_app(GatewaySettings()).openapi())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                max_examples=MAX_EXAMPLES)


@pytest.fixture
def target(gateway, keys) -> dict[str, str]:
    return {"url": gateway.url, "key": keys.write}


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx_and_every_4xx_is_a_problem(case, target):
    headers = {k: v for k, v in (case.headers or {}).items()
               if k.lower() not in ("authorization", "x-api-key")}
    case.headers = {**headers, "X-Api-Key": target["key"]}
    response = case.call(base_url=target["url"], timeout=30)
    case.validate_response(response, checks=[
        not_a_server_error, gateway_4xx_is_problem_json, status_code_conformance,
        content_type_conformance, response_schema_conformance,
    ])
