import orjson
import pytest

from ingest_gateway.problems import (
    MAX_INVALID_PARAMS,
    PROBLEM_JSON,
    problem_body,
    problem_response,
    split_reason,
)

pytestmark = pytest.mark.unit


def test_problem_has_the_rfc_9457_members_and_names_the_part():
    assert problem_body(413, "body larger than the limit", [("body", "too large")]) == {
        "type": "about:blank", "title": "Request Entity Too Large", "status": 413,
        "detail": "body larger than the limit",
        "invalid_params": [{"name": "body", "reason": "too large"}]}


def test_extra_members_sit_beside_the_problem_and_params_are_capped():
    params = [(f"events[{i}].path", "bad") for i in range(500)]
    body = problem_body(400, "no valid event", params, accepted=0, rejected=[])
    assert (body["accepted"], body["rejected"]) == (0, [])
    assert len(body["invalid_params"]) == MAX_INVALID_PARAMS


def test_response_is_problem_json_with_headers():
    resp = problem_response(429, "slow down", [("X-Api-Key", "rate")], {"Retry-After": "2"})
    assert resp.media_type == PROBLEM_JSON and resp.headers["retry-after"] == "2"
    assert orjson.loads(resp.body)["title"] == "Too Many Requests"


@pytest.mark.parametrize(("message", "expected"), [
    ("path: must start with '/'", ("path", "must start with '/'")),
    ("body: nested deeper than 64 levels", ("body", "nested deeper than 64 levels")),
    ("X-Turnstile-Batch-Id: 1-64 of [A-Za-z0-9._:-]",
     ("X-Turnstile-Batch-Id", "1-64 of [A-Za-z0-9._:-]")),
    ("unknown or revoked key", ("request", "unknown or revoked key")),
    ("no field here: but a colon", ("request", "no field here: but a colon")),
])
def test_messages_split_into_the_part_and_the_reason(message, expected):
    assert split_reason(message, "request") == expected
