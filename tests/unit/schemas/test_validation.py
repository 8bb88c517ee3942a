import math
from typing import Any

import msgspec
import orjson
import pytest

from schemas.event import ANONYMOUS_API_KEY, MAX_ENDPOINT, IncomingEvent
from schemas.storable import SURROGATE_PROBLEM
from schemas.validation import (
    MAX_JSON_DEPTH,
    BodyError,
    decode_incoming,
    validate_batch,
    validate_events,
)

pytestmark = pytest.mark.unit

NOW_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def good(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "ev-1",
        "timestamp": 1_767_225_500.25,
        "method": "get",
        "path": "/users/42",
        "status_code": 200,
        "latency_ms": 12.5,
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def run(events: Any) -> Any:
    return validate_batch(orjson.dumps(events), project_id="p1", received_at_us=NOW_US)


def test_minimal_event_is_completed_with_defaults() -> None:
    batch = run([good()])
    assert batch.rejected == []
    (rec,) = batch.records
    assert rec.project_id == "p1"
    assert rec.received_at_us == NOW_US
    assert rec.timestamp_us == 1_767_225_500_250_000
    assert rec.method == "GET"
    assert rec.endpoint == "/users/{id}"
    assert rec.api_key == ANONYMOUS_API_KEY
    assert (rec.request_bytes, rec.response_bytes) == (0, 0)


def test_all_fields_are_carried() -> None:
    batch = run(
        [
            good(
                endpoint="/users/{user_id}",
                request_bytes=10,
                response_bytes=20,
                api_key="cust-9",
                ip="203.0.113.9",
                user_agent="curl/8",
                country="de",
                function="get_user",
                tags={"region": "eu"},
            )
        ]
    )
    rec = batch.records[0]
    assert rec.endpoint == "/users/{user_id}"
    assert (rec.request_bytes, rec.response_bytes) == (10, 20)
    assert (rec.api_key, rec.ip, rec.user_agent) == ("cust-9", "203.0.113.9", "curl/8")
    assert (rec.country, rec.function, rec.tags) == ("DE", "get_user", {"region": "eu"})


@pytest.mark.parametrize("alias", ["consumer_id", "customer_id"])
def test_consumer_aliases_fill_api_key(alias: str) -> None:
    assert run([good(**{alias: "c-1"})]).records[0].api_key == "c-1"


def test_api_key_wins_over_aliases() -> None:
    assert run([good(api_key="k", consumer_id="c")]).records[0].api_key == "k"


def test_response_us_alias_is_converted_to_ms() -> None:
    assert run([good(latency_ms=..., response_us=2500)]).records[0].latency_ms == 2.5


@pytest.mark.parametrize(
    ("timestamp", "expected_us"),
    [
        ("2026-01-01T00:00:00Z", NOW_US),
        ("2025-12-31T23:00:00-01:00", NOW_US),
        ("2025-12-31T23:59:59.123456Z", NOW_US - 876_544),
        (1_767_225_600, NOW_US),
        (1_767_225_599.5, NOW_US - 500_000),
    ],
)
def test_timestamp_forms(timestamp: Any, expected_us: int) -> None:
    assert run([good(timestamp=timestamp)]).records[0].timestamp_us == expected_us


def test_path_query_string_is_stripped_and_full_urls_reduced_to_path() -> None:
    recs = run([good(path="/a/1?x=1"), good(path="https://api.example.com/b/2?y")]).records
    assert [r.path for r in recs] == ["/a/1", "/b/2"]
    assert [r.endpoint for r in recs] == ["/a/{id}", "/b/{id}"]


@pytest.mark.parametrize(
    ("overrides", "expected_error"),
    [
        ({"event_id": ...}, "event_id: required"),
        ({"event_id": ""}, "event_id: Expected `str` of length >= 1"),
        ({"event_id": "x" * 65}, "event_id: Expected `str` of length <= 64"),
        ({"event_id": 5}, "event_id: Expected `str`, got `int`"),
        ({"timestamp": ...}, "timestamp: required"),
        ({"timestamp": "yesterday"}, "timestamp: Invalid RFC3339 encoded datetime"),
        ({"timestamp": "2026-01-01T00:00:00"}, "timestamp: RFC 3339 timestamps need a UTC offset"),
        ({"timestamp": 1_767_225_600_000}, "timestamp: too far in the future"),
        ({"timestamp": 12}, "timestamp: before 2000-01-01"),
        ({"timestamp": True}, "timestamp: Expected `float | datetime`, got `bool`"),
        ({"method": ...}, "method: required"),
        ({"method": "FETCH"}, "method: must be an HTTP method"),
        ({"method": "G E T"}, "method: must be an HTTP method"),
        ({"path": ...}, "path: required"),
        ({"path": ""}, "path: Expected `str` of length >= 1"),
        ({"path": "users/1"}, "path: must start with '/'"),
        ({"path": "/" + "a" * 2048}, "path: Expected `str` of length <= 2048"),
        ({"status_code": ...}, "status_code: required"),
        ({"status_code": 99}, "status_code: Expected `int` >= 100"),
        ({"status_code": 600}, "status_code: Expected `int` <= 599"),
        ({"status_code": "200"}, "status_code: Expected `int`, got `str`"),
        ({"latency_ms": ...}, "latency_ms: required (or response_us)"),
        ({"latency_ms": -1}, "latency_ms: Expected `float` >= 0"),
        ({"latency_ms": 1e12}, "latency_ms: Expected `float` <= 86400000.0"),
        ({"latency_ms": ..., "response_us": -5}, "response_us: Expected `float` >= 0"),
        ({"request_bytes": -1}, "request_bytes: Expected `int` >= 0"),
        ({"response_bytes": 1.5}, "response_bytes: Expected `int`, got `float`"),
        ({"api_key": "k" * 129}, "api_key: Expected `str` of length <= 128"),
        ({"consumer_id": 7}, "consumer_id: Expected `str | null`, got `int`"),
        ({"customer_id": "c" * 200}, "customer_id: Expected `str` of length <= 128"),
        ({"ip": "not an ip!"}, "ip: must be an IPv4/IPv6 address"),
        ({"country": "Germany"}, "country: must be an ISO 3166-1 alpha-2 code"),
        ({"endpoint": ""}, "endpoint: Expected `str` of length >= 1"),
        ({"function": "f" * 300}, "function: Expected `str` of length <= 256"),
        ({"tags": {"k": 1}}, "tags: Expected `str`, got `int`"),
        ({"tags": {f"k{i}": "v" for i in range(40)}}, "tags: Expected `object` of length <= 32"),
        ({"user_agent": 5}, "user_agent: Expected `str | null`, got `int`"),
    ],
)
def test_bad_field_is_rejected_with_a_message_naming_it(
    overrides: dict[str, Any], expected_error: str
) -> None:
    batch = run([good(event_id="ok-0"), good(**overrides), good(event_id="ok-2")])
    assert [r.event_id for r in batch.records] == ["ok-0", "ok-2"]
    assert batch.indices == [0, 2]
    (rejection,) = batch.rejected
    assert rejection.index == 1
    assert any(e.startswith(expected_error) for e in rejection.errors), rejection.errors


def test_every_error_of_an_event_is_reported() -> None:
    batch = run([{"event_id": "", "timestamp": "x", "method": "GET", "status_code": 700}])
    errors = batch.rejected[0].errors
    fields = {e.split(":")[0] for e in errors}
    assert fields == {"event_id", "timestamp", "path", "status_code"}


def test_non_object_event_is_rejected() -> None:
    batch = run([good(), 5, "x"])
    assert len(batch.records) == 1
    assert [r.index for r in batch.rejected] == [1, 2]
    assert batch.rejected[0].errors == ["event: expected a JSON object, got int"]


def test_envelope_form_is_accepted() -> None:
    assert len(run({"events": [good(), good(event_id="2")]}).records) == 2


def test_unknown_fields_are_ignored() -> None:
    assert len(run([good(something_new=1)]).records) == 1


def test_user_agent_is_truncated_not_rejected() -> None:
    assert len(run([good(user_agent="u" * 5000)]).records[0].user_agent or "") == 512


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body: Input data was truncated"),
        (b"{not json", "body: JSON is malformed"),
        (b'"a string"', "body: expected a JSON array of events"),
        (b'{"evnts": []}', "body: expected a JSON array of events"),
    ],
)
def test_unreadable_body_raises_body_error(body: bytes, message: str) -> None:
    with pytest.raises(BodyError) as info:
        validate_batch(body, project_id="p", received_at_us=NOW_US)
    assert str(info.value).startswith(message)


def test_records_carry_the_batch_id_and_their_position_in_the_request() -> None:
    body = orjson.dumps([good(event_id="a"), good(status_code=700), good(event_id="c")])
    batch = validate_batch(body, project_id="p1", received_at_us=NOW_US, batch_id="b-7")
    assert [(r.event_id, r.batch_id, r.batch_index) for r in batch.records] == [
        ("a", "b-7", 0), ("c", "b-7", 2)]  # positions as sent, the rejected one included
    plain = run([good()]).records[0]
    assert (plain.batch_id, plain.batch_index) == ("", -1)


NUL_REASON = "contains U+0000 (NUL), which PostgreSQL cannot store"


@pytest.mark.parametrize(
    ("overrides", "expected_error"),
    [
        ({"event_id": "ev\x00"}, f"event_id: {NUL_REASON}"),
        ({"path": "/a\x00b"}, f"path: {NUL_REASON}"),
        ({"endpoint": "/a/{id}\x00"}, f"endpoint: {NUL_REASON}"),
        ({"api_key": "k\x00"}, f"api_key: {NUL_REASON}"),
        ({"consumer_id": "\x00"}, f"consumer_id: {NUL_REASON}"),
        ({"customer_id": "c\x00"}, f"customer_id: {NUL_REASON}"),
        ({"user_agent": "curl\x00/8"}, f"user_agent: {NUL_REASON}"),
        ({"function": "f\x00"}, f"function: {NUL_REASON}"),
        ({"tags": {"region": "eu\x00"}}, f"tags.region: {NUL_REASON}"),
        ({"tags": {"re\x00gion": "eu"}}, f"tags: a key {NUL_REASON}"),
        ({"ip": "10.0.0.1\x00"}, "ip: must be an IPv4/IPv6 address"),
        ({"country": "D\x00"}, "country: must be an ISO 3166-1 alpha-2 code"),
        ({"country": "DE\n"}, "country: must be an ISO 3166-1 alpha-2 code"),
        ({"method": "GET\x00"}, "method: must be an HTTP method"),
        ({"path": "/é\x00"}, f"path: {NUL_REASON}"),  # non-ASCII: the slow text check
    ],
)
def test_unstorable_text_is_rejected_naming_the_field(
    overrides: dict[str, Any], expected_error: str
) -> None:
    batch = run([good(event_id="ok-0"), good(**overrides), good(event_id="ok-2")])
    assert [r.event_id for r in batch.records] == ["ok-0", "ok-2"]
    (rejection,) = batch.rejected
    assert rejection.index == 1
    assert any(e.startswith(expected_error) for e in rejection.errors), rejection.errors


def test_an_event_that_also_fails_its_types_reports_the_nul_too() -> None:
    batch = run([good(status_code=700, path="/a\x00")])
    assert set(batch.rejected[0].errors) >= {
        f"path: {NUL_REASON}", "status_code: Expected `int` <= 599"}


def test_nul_only_in_what_the_gateway_drops_is_accepted() -> None:
    recs = run([good(path="/a/1?q=\x00"), good(user_agent="u" * 600 + "\x00")]).records
    assert recs[0].path == "/a/1"
    assert recs[0].endpoint == "/a/{id}"
    assert recs[1].user_agent == "u" * 512


def test_non_ascii_text_is_accepted_as_is() -> None:
    (rec,) = run([good(path="/straße/ü", user_agent="Ünïcødé 😀", tags={"ключ": "値"})]).records
    assert (rec.path, rec.user_agent, rec.tags) == ("/straße/ü", "Ünïcødé 😀", {"ключ": "値"})


def test_lone_surrogates_reaching_the_validator_are_rejected() -> None:
    """msgspec refuses them in JSON; events decoded some other way are still checked."""
    ev = msgspec.convert(good(path="/a\ud800", user_agent="x\udfff"), IncomingEvent)
    batch = validate_events([ev], project_id="p", received_at_us=NOW_US)
    assert batch.rejected[0].errors == [
        f"path: {SURROGATE_PROBLEM}", f"user_agent: {SURROGATE_PROBLEM}"]


def test_json_cannot_smuggle_what_the_backslash_shortcut_skips() -> None:
    """``check_text`` is False only without a backslash: raw control bytes, invalid UTF-8
    and lone surrogates must stay decode errors for that to be sound."""
    for body in (b'["a\x00b"]', b'["\xff"]', b'["\xed\xa0\x80"]', rb'["\ud800"]',
                 rb'["\udc00"]'):
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(body)
    assert not decode_incoming(orjson.dumps([good()])).check_text
    assert decode_incoming(orjson.dumps([good(path="/a\x00")])).check_text


def test_derived_endpoint_is_cut_to_the_endpoint_limit() -> None:
    rec = run([good(path="/" + "a" * 2000)]).records[0]
    assert len(rec.endpoint) == MAX_ENDPOINT


@pytest.mark.parametrize("timestamp", [1e308, -1e308, 1e19, 9.3e12])
def test_timestamps_that_overflow_microseconds_are_rejected_not_raised(timestamp: float) -> None:
    batch = run([good(timestamp=timestamp), good(event_id="ok")])
    assert [r.event_id for r in batch.records] == ["ok"]
    assert batch.rejected[0].errors[0].startswith("timestamp: ")


def test_non_finite_timestamp_is_rejected_naming_it() -> None:
    ev = msgspec.structs.replace(msgspec.convert(good(), IncomingEvent), timestamp=math.nan)
    batch = validate_events([ev], project_id="p", received_at_us=NOW_US)
    assert batch.rejected[0].errors == ["timestamp: must be a finite number"]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'[{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}]",
        b'[{"status_code": "x", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}]",
        b'{"events": [{"x": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}]}",
    ],
)
def test_deep_nesting_is_a_body_error_naming_the_limit(body: bytes) -> None:
    with pytest.raises(BodyError) as info:
        validate_batch(body, project_id="p", received_at_us=NOW_US)
    assert str(info.value) == f"body: nested deeper than {MAX_JSON_DEPTH} levels"


def test_bodies_up_to_the_depth_limit_are_read() -> None:
    deep = "[" * (MAX_JSON_DEPTH - 3) + "]" * (MAX_JSON_DEPTH - 3)
    body = b'{"events": [' + orjson.dumps(good())[:-1] + f', "x": {deep}}}]}}'.encode()
    assert len(validate_batch(body, project_id="p", received_at_us=NOW_US).records) == 1


def test_an_escaped_lone_surrogate_refuses_its_event_only_naming_the_field():
    from schemas.storable import SURROGATE_PROBLEM
    from schemas.validation import validate_batch as _validate

    base = ('{"event_id":"%s","timestamp":1767225600.5,"method":"GET","path":"%s",'
            '"status_code":200,"latency_ms":1%s}')
    body = ("[" + ",".join([
        base % ("bad-path", "/x\\ud800", ""),
        base % ("good", "/ok", ',"user_agent":"\\\\ud800 is text here \\ud83d\\ude00"'),
        base % ("bad-tag", "/y", ',"tags":{"k":"\\udfff"}'),
        base % ("good-2", "/z", ""),
    ]) + "]").encode()
    batch = _validate(body, project_id="p", received_at_us=1_767_225_600_000_000)
    assert [r.event_id for r in batch.records] == ["good", "good-2"]
    assert batch.records[0].user_agent == "\\ud800 is text here \U0001f600"
    assert [(r.index, r.errors) for r in batch.rejected] == [
        (0, [f"path: {SURROGATE_PROBLEM}"]), (2, [f"tags.k: {SURROGATE_PROBLEM}"])]
