"""Property tests of the event decoder and validator: hostile bodies never raise, and every
accepted record is storable by every sink.

Bodies are built as JSON *text* (not through a JSON library) so that what no encoder would
write still reaches the decoder: huge integers, ``NaN``/``Infinity`` tokens, ``1e400``, lone
surrogate escapes, raw control bytes, invalid UTF-8, nesting thousands of levels deep.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.event import EventRecord
from schemas.storable import text_problem
from schemas.validation import BodyError, decode_incoming, validate_batch, validate_events

pytestmark = pytest.mark.unit

NOW_US = 1_767_225_600_000_000
INT64_MAX = 2**63 - 1
TEXT_FIELDS = ("event_id", "project_id", "method", "path", "endpoint", "api_key", "ip",
               "user_agent", "country", "function", "batch_id")
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Any character at all, surrogates and NUL included, as JSON string text (escaped by orjson
# where it can be; lone surrogates written as the \uXXXX escape orjson refuses to make).
_chars = st.characters(min_codepoint=0, exclude_categories=())


def _render(value: Any) -> str:
    """JSON text of a value whose strings may hold lone surrogates (orjson refuses them)."""
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_string(k)}:{_render(v)}" for k, v in value.items()) + "}"
    return orjson.dumps(value).decode()


def _json_string(text: str) -> str:
    out = []
    for ch in text:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(orjson.dumps(ch).decode()[1:-1])
    return '"' + "".join(out) + '"'


json_strings = st.text(_chars, max_size=40).map(_json_string)
odd_numbers = st.sampled_from([
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, "-" + "9" * 30,
    "1e308", "-1e308", "9223372036854775808", "-9223372036854775809", "0.0", "-0", "1e-400",
    "18446744073709551616", "4.9e-324", "1E5", "01", "1.", ".5", "+1",
])
plain_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
scalars = st.one_of(json_strings, odd_numbers, plain_numbers,
                    st.sampled_from(["true", "false", "null"]))


def _nest(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "[" else ('{"a":' * depth + "1" + "}" * depth)


deep = st.builds(_nest, st.integers(min_value=1, max_value=5000), st.sampled_from(["[", "{"]))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(json_strings, inner, max_size=4).map(
            lambda d: "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"),
    ),
    max_leaves=12,
) | deep

_GOOD: dict[str, str] = {
    "event_id": '"ev-1"', "timestamp": "1767225500.25", "method": '"GET"',
    "path": '"/users/42"', "status_code": "200", "latency_ms": "12.5",
}
_FIELDS = ["event_id", "timestamp", "method", "path", "status_code", "latency_ms", "endpoint",
           "response_us", "request_bytes", "response_bytes", "api_key", "consumer_id",
           "customer_id", "ip", "user_agent", "country", "function", "tags", "unknown"]


@st.composite
def events(draw: st.DrawFn) -> str:
    """A mostly valid event with a few fields replaced by anything at all."""
    fields = dict(_GOOD)
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=4)):
        fields[name] = draw(json_values | json_strings | st.just(
            "{" + ",".join(f"{draw(json_strings)}:{draw(json_strings)}" for _ in range(2)) + "}"))
    for name in draw(st.lists(st.sampled_from(list(_GOOD)), max_size=2)):
        fields.pop(name, None)
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(events() | json_values, min_size=0, max_size=6))
    text = "[" + ",".join(items) + "]"
    if draw(st.booleans()):
        text = '{"events":' + text + "}"
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # now and then a raw byte anywhere (invalid UTF-8, NUL)
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at:]
    return raw


def assert_storable(record: EventRecord) -> None:
    for name in TEXT_FIELDS:
        value = getattr(record, name)
        if value is not None:
            assert text_problem(value) is None, (name, value)
    for key, value in (record.tags or {}).items():
        assert text_problem(key) is None and text_problem(value) is None, record.tags
    assert -INT64_MAX <= record.timestamp_us <= INT64_MAX
    assert math.isfinite(record.latency_ms) and record.latency_ms >= 0
    assert 0 <= record.request_bytes <= 2**53 and 0 <= record.response_bytes <= 2**53
    assert 100 <= record.status_code <= 599
    assert orjson.loads(msgspec.json.encode(record))  # the record itself encodes as JSON


def check(body: bytes) -> Any:
    """Validate ``body``: only ``BodyError`` may escape; accepted records are storable."""
    try:
        decoded = decode_incoming(body)
    except BodyError as exc:
        assert str(exc).startswith("body:"), exc
        return None
    batch = validate_events(decoded.items, project_id="p", received_at_us=NOW_US,
                            batch_id="b", check_text=decoded.check_text)
    assert batch.total == decoded.count
    for record in batch.records:
        assert_storable(record)
    for rejection in batch.rejected:
        assert rejection.errors and all(": " in e for e in rejection.errors), rejection
        orjson.dumps(rejection)  # an error message never carries an unencodable value
    # The no-backslash shortcut must decide exactly as the full text checks do.
    full = validate_events(decoded.items, project_id="p", received_at_us=NOW_US,
                           batch_id="b", check_text=True)
    assert full.records == batch.records and full.rejected == batch.rejected
    return batch


@SETTINGS
@given(bodies())
@example(b'[{"event_id":"a","timestamp":1e308,"method":"GET","path":"/","status_code":200,'
         b'"latency_ms":1}]')
@example(b'[{"event_id":"a\\u0000","timestamp":1767225500,"method":"GET","path":"/",'
         b'"status_code":200,"latency_ms":1}]')
@example(b'[{"x":' + b"[" * 3000 + b"]" * 3000 + b"}]")
def test_any_body_is_a_body_error_or_storable_records(body: bytes) -> None:
    check(body)


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_body_error(body: bytes) -> None:
    check(body)


@SETTINGS
@given(st.lists(st.text(_chars, max_size=30), min_size=6, max_size=6))
def test_any_text_in_any_text_field_is_stored_only_when_storable(texts: list[str]) -> None:
    event = {"event_id": texts[0] or "e", "timestamp": 1_767_225_500.0, "method": "GET",
             "path": "/" + texts[1], "status_code": 200, "latency_ms": 1.0,
             "user_agent": texts[2], "function": texts[3] or None,
             "api_key": texts[4] or None, "tags": {texts[5] or "k": texts[5]}}
    body = "[" + _render(event) + "]"
    batch = check(body.encode("utf-8", "surrogatepass"))
    if batch is not None and not batch.records:
        assert batch.rejected[0].errors


def test_non_json_numbers_and_huge_values_are_refused_cleanly() -> None:
    for token in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(BodyError):
            validate_batch(f'[{{"event_id":"a","timestamp":{token}}}]'.encode(),
                           project_id="p", received_at_us=NOW_US)
    for token in ("1e400", "1" + "0" * 400, "1e308"):
        body = (f'[{{"event_id":"a","timestamp":{token},"method":"GET","path":"/",'
                f'"status_code":200,"latency_ms":1}}]').encode()
        batch = check(body)
        assert batch is not None and not batch.records
        assert batch.rejected[0].errors[0].startswith(("timestamp:", "event:"))
