import orjson
import pytest

from ingest_gateway.app import create_app
from ingest_gateway.openapi import EXAMPLE_BATCH
from ingest_gateway.settings import GatewaySettings
from schemas.jsonschema import SCHEMA_DIR
from schemas.validation import validate_batch

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def document():
    return create_app(GatewaySettings()).openapi()


def test_every_route_is_described(document):
    assert set(document["paths"]) == {"/api/v1/events/batch", "/healthz", "/readyz", "/metrics"}
    assert document["openapi"].startswith("3.1")


def test_the_batch_body_is_the_incoming_event_array_or_envelope(document):
    op = document["paths"]["/api/v1/events/batch"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    refs = {s.get("$ref") or s["items"]["$ref"] for s in schema["anyOf"]}
    assert refs == {"#/components/schemas/EventsEnvelope", "#/components/schemas/IncomingEvent"}
    published = orjson.loads((SCHEMA_DIR / "incoming_event.schema.json").read_bytes())
    incoming = dict(document["components"]["schemas"]["IncomingEvent"])
    timestamp = incoming["properties"]["timestamp"]
    assert timestamp["anyOf"][0]["minimum"] == 946_684_800  # the one documented addition
    expected = published["$defs"]["IncomingEvent"]
    assert set(incoming["properties"]) == set(expected["properties"])
    assert incoming["required"] == expected["required"]
    for name, prop in expected["properties"].items():
        if name != "timestamp":
            assert incoming["properties"][name] == prop, name


def test_every_refusal_is_documented_as_problem_json(document):
    responses = document["paths"]["/api/v1/events/batch"]["post"]["responses"]
    assert set(responses) == {"202", "400", "401", "403", "413", "415", "429", "503"}
    for code, answer in responses.items():
        media = "application/json" if code == "202" else "application/problem+json"
        assert list(answer["content"]) == [media], code
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert "invalid_params" in problem["properties"]


def test_the_documented_example_is_accepted():
    batch = validate_batch(orjson.dumps(EXAMPLE_BATCH), project_id="p",
                           received_at_us=1_767_225_600_000_000)
    assert batch.rejected == [] and len(batch.records) == 1
