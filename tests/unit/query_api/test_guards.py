import json

import pytest
from pydantic import BaseModel, ValidationError

from query_api.guards import (
    MAX_PARAM_CHARS,
    StorableText,
    first_problem,
    json_too_deep,
    parameter_problem,
)
from query_api.problems import printable, problem_body


@pytest.mark.parametrize(("value", "reason"), [
    ("a\x00b", "U+0000"),
    ("\ud800", "surrogate"),
    ("x" * (MAX_PARAM_CHARS + 1), "longer than"),
])
def test_unservable_parameter_values_are_named(value, reason):
    name, why = parameter_problem("endpoint", value)
    assert name == "endpoint" and reason in why


def test_fine_parameters_pass_and_the_first_bad_one_is_reported():
    assert parameter_problem("endpoint", "/users/{id}") is None
    assert parameter_problem("api_key", "é" * MAX_PARAM_CHARS) is None
    found = first_problem([("method", "GET"), ("api_key", "k\x00"), ("endpoint", "\x00")])
    assert found is not None and found[0] == "api_key"


def test_a_bad_parameter_name_is_reported_printable():
    name, why = parameter_problem("a\x00\ud800", "1")
    assert "parameter name" in why
    json.dumps({"name": name}).encode()  # encodable: no lone surrogate left


@pytest.mark.parametrize(("body", "too_deep"), [
    (b'{"a": 1}', False),
    (b"[" * 4 + b"]" * 4, True),
    (b"[" * 3 + b"]" * 3 + b"[" * 3, False),  # many brackets, never deeper than 3
    (b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', False),  # inside a string
    (b'{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "b": [1]}', False),  # escaped quote
    (b'{"a": "\\\\", "b": [[[[1]]]]}', True),  # an escaped backslash ends no string
])
def test_json_depth_counts_brackets_outside_strings(body, too_deep):
    assert json_too_deep(body, limit=3) is too_deep


def test_a_very_deep_body_is_refused_without_recursion():
    assert json_too_deep(b"[" * 1_000_000, limit=32)


class _Body(BaseModel):
    name: StorableText


@pytest.mark.parametrize("text", ["a\x00", "\udfff"])
def test_storable_text_refuses_what_postgresql_cannot_hold(text):
    with pytest.raises(ValidationError) as err:
        _Body(name=text)
    assert err.value.errors()[0]["loc"] == ("name",)


def test_problem_bodies_are_always_encodable():
    body = problem_body(400, "Invalid parameter", "x: \ud800\x00", [("k\ud800", "r\x00")])
    encoded = json.dumps(body, ensure_ascii=False).encode("utf-8")
    assert b"\\ud800" in encoded and printable("plain") == "plain"

