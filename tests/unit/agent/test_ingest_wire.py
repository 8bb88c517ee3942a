"""The ingest wire contract: the agent's names and limits are the gateway's and the event's."""

import subprocess
import sys

import msgspec
import pytest

from agent import transport
from agent.capture import build_event
from ingest_gateway import openapi, routes
from schemas import event, ingest_wire
from schemas.event import IncomingEvent

pytestmark = pytest.mark.unit


def _properties() -> dict:
    schema = msgspec.json.schema(IncomingEvent)
    return schema["$defs"]["IncomingEvent"]["properties"]


def _string(prop: dict) -> dict:
    """The non-null branch of an optional field's schema."""
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") != "null":
            return branch
    raise AssertionError(prop)


@pytest.mark.parametrize(("field", "limit"), [
    ("event_id", ingest_wire.MAX_EVENT_ID),
    ("method", ingest_wire.MAX_METHOD),
    ("path", ingest_wire.MAX_PATH),
    ("endpoint", ingest_wire.MAX_ENDPOINT),
    ("api_key", ingest_wire.MAX_API_KEY),
    ("consumer_id", ingest_wire.MAX_API_KEY),
    ("ip", ingest_wire.MAX_IP),
    ("function", ingest_wire.MAX_FUNCTION),
])
def test_agent_text_limits_equal_the_event_schema(field, limit):
    assert _string(_properties()[field])["maxLength"] == limit


def test_agent_number_and_tag_limits_equal_the_event_schema():
    props = _properties()
    assert props["status_code"]["minimum"] == ingest_wire.MIN_STATUS_CODE
    assert props["status_code"]["maximum"] == ingest_wire.MAX_STATUS_CODE
    assert _string(props["latency_ms"])["maximum"] == ingest_wire.MAX_LATENCY_MS
    assert props["request_bytes"]["maximum"] == ingest_wire.MAX_BYTES
    assert props["response_bytes"]["maximum"] == ingest_wire.MAX_BYTES
    tags = _string(props["tags"])
    assert tags["maxProperties"] == ingest_wire.MAX_TAGS
    assert tags["propertyNames"]["maxLength"] == ingest_wire.MAX_TAG_KEY
    assert tags["additionalProperties"]["maxLength"] == ingest_wire.MAX_TAG_VALUE
    # Limits the annotations cannot carry, checked by schemas.validation with these names.
    assert event.MAX_USER_AGENT == ingest_wire.MAX_USER_AGENT
    assert event.IP_CHARS == ingest_wire.IP_CHARS


def test_an_event_cut_by_the_agent_passes_the_gateway_validation():
    from schemas.validation import decode_incoming, validate_events

    huge = build_event(
        event_id="e" * 500, timestamp=1_767_225_600.0, method="g" * 40, path="/" + "p" * 9000,
        endpoint="/" + "x" * 9000, status_code=200, latency_ms=1e12, request_bytes=2**60,
        response_bytes=-5, api_key="k" * 900, ip="1" * 200, user_agent="u" * 9000,
        country="DE", function="f" * 900)
    huge["method"] = "GET"  # the method's vocabulary is the gateway's, not a length
    decoded = decode_incoming(msgspec.json.encode([huge]))
    batch = validate_events(decoded.items, project_id="p", received_at_us=1_767_225_600_000_000,
                            batch_id="b", check_text=decoded.check_text,
                            max_future_us=10**18)
    assert batch.rejected == [] and len(batch.records) == 1


def test_gateway_serves_the_path_header_and_answer_the_agent_uses():
    assert transport.BATCH_PATH == ingest_wire.INGEST_BATCH_PATH
    assert ingest_wire.INGEST_BATCH_PATH in {r.path for r in routes.router.routes}
    assert routes.BATCH_ID_REQUEST_HEADER == ingest_wire.BATCH_ID_HEADER.lower()
    (param,) = openapi.BATCH_ROUTE_DOCS["openapi_extra"]["parameters"]
    assert param["name"] == ingest_wire.BATCH_ID_HEADER
    assert param["schema"]["pattern"] == ingest_wire.BATCH_ID_PATTERN
    answer = set(openapi.COMPONENTS["BatchAccepted"]["properties"])
    assert answer == {ingest_wire.ACCEPTED_FIELD, ingest_wire.REJECTED_FIELD}
    assert answer == set(ingest_wire.BatchAnswer.__annotations__)


def test_batch_id_pattern_accepts_the_agents_ids_and_refuses_others():
    assert ingest_wire.BATCH_ID_RE.match("0" * 32)
    assert not ingest_wire.BATCH_ID_RE.match("a" * (ingest_wire.MAX_BATCH_ID + 1))
    assert not ingest_wire.BATCH_ID_RE.match("bad id")


def test_rejected_count_reads_the_answer():
    answer = {"accepted": 1, "rejected": [{"index": 0, "errors": []}]}
    assert ingest_wire.rejected_count(answer) == 1
    assert ingest_wire.rejected_count([1, 2]) == 0
    assert ingest_wire.rejected_count({"accepted": 3}) == 0


def test_the_agent_imports_no_gateway_dependency():
    code = ("import sys, agent, schemas.ingest_wire; "
            "print(sorted(m for m in ('msgspec', 'fastapi', 'psycopg', 'pyarrow', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_consumer_hash_is_keyed_and_has_the_documented_shape():
    key = "0f" * 32
    hashed = ingest_wire.hash_consumer_id("cust-1", key)
    assert ingest_wire.looks_hashed(hashed)
    assert hashed != ingest_wire.hash_consumer_id("cust-1", "")
    other_key = "f0" * 32
    assert hashed != ingest_wire.hash_consumer_id("cust-1", other_key)
    assert not ingest_wire.looks_hashed("cust-1")
