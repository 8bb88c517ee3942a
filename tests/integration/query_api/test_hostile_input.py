"""Hostile parameters and bodies get a 4xx problem+json naming what is wrong, never a 5xx."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from query_api.app import create_app
from query_api.guards import MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_PARAM_CHARS
from query_api.settings import QuerySettings
from schemas.lake import LakeSettings
from schemas.settings import DatabaseSettings
from tests.integration.query_api.fixtures import served

NUL, LONG = "a\x00b", "x" * (MAX_PARAM_CHARS + 1)
RULE = {"name": "errors", "metric": "error_rate", "comparator": ">", "threshold": 0.5,
        "channel": "webhook", "target": "https://hooks.example.com/x"}

# (path, the parameter at fault, its value): query filters, times, cursors, formats, paths
HOSTILE = [
    ("/api/v1/analytics/endpoints", "endpoint", NUL),
    ("/api/v1/analytics/consumers", "api_key", NUL),
    ("/api/v1/analytics/historical", "method", NUL),
    ("/api/v1/analytics/historical", "start", NUL),
    ("/api/v1/analytics/historical", "granularity", LONG),
    ("/api/v1/analytics/countries", "country", NUL),
    ("/api/v1/analytics/requests", "cursor", NUL),
    ("/api/v1/analytics/requests", "status_code", LONG),
    ("/api/v1/analytics/realtime", "window", NUL),
    ("/api/v1/analytics/realtime", "format", NUL),
    ("/api/v1/analytics/timeseries/2025-06-02/2025-06-03/", "group", NUL),
    ("/api/v1/analytics/timeseries/2025-06-02/2025-06-03/", "include", "api_key:" + NUL),
    ("/api/v1/billing/usage", "api_key", NUL),
    ("/api/v1/billing/usage", "period", LONG),
    ("/api/v1/pipeline/dead-letters", "since", NUL),
    ("/api/v1/pipeline/dead-letters", "cursor", LONG),
]


def assert_problem(r: httpx.Response, status: int, name: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    if name is not None:
        assert name in [p["name"] for p in body["invalid_params"]], body
    return body


@pytest.mark.parametrize(("path", "name", "value"), HOSTILE)
def test_unstorable_or_absurd_query_parameters_are_400_naming_them(world, path, name, value):
    r = world.client.get(path, params={name: value}, headers=world.a.h())
    body = assert_problem(r, 400, name)
    assert ("U+0000" in body["detail"]) == ("\x00" in value)


@pytest.mark.parametrize("path", [
    "/api/v1/quotas/a%00b",
    "/api/v1/analytics/timeseries/2025-06-02%00/2025-06-03/",
    "/api/v1/keys/k%00",
])
def test_nul_in_a_path_parameter_is_400_naming_it(world, path):
    r = world.client.request("DELETE" if "keys" in path else "GET", path,
                             headers=world.a.h("admin"))
    assert_problem(r, 400)
    assert r.json()["invalid_params"][0]["name"] in ("api_key", "start", "key_id")


@pytest.mark.parametrize(("params", "name"), [
    ({"start": "0001-01-01T00:00:00+01:00"}, "start"),
    ({"start": "9999-12-30", "end": "9999-12-31"}, "end"),
    ({"start": "now-99999999999d"}, "start"),
    ({"granularity": "99999999999999999999m"}, "granularity"),
])
def test_times_that_would_overflow_are_400(world, params, name):
    r = world.client.get("/api/v1/analytics/historical", params=params, headers=world.a.h())
    assert_problem(r, 400, name)


def test_a_forged_request_cursor_is_400(world):
    import base64

    forged = base64.urlsafe_b64encode(b"99999999999999999999999:x").decode()
    r = world.client.get("/api/v1/analytics/requests", params={
        "cursor": forged, "start": "2025-06-01", "end": "2025-06-10"}, headers=world.a.h())
    assert_problem(r, 400, "cursor")


@pytest.mark.parametrize(("field", "value"), [
    ("name", "x\x00"), ("target", "https://hooks.example.com/\ud800"), ("endpoint", "\x00"),
])
def test_unstorable_text_in_a_json_body_is_400_naming_the_field(world, field, value):
    body = json.dumps({**RULE, field: value})  # \u0000 and \ud800 escapes, valid JSON
    r = world.client.post("/api/v1/alerts/rules", content=body, headers={
        **world.a.h("admin"), "Content-Type": "application/json"})
    assert_problem(r, 400, field)


@pytest.mark.parametrize(("field", "value"), [
    ("threshold", "NaN"), ("threshold", "Infinity"), ("min_requests", "1" + "0" * 30),
    ("window_minutes", '"five"'), ("enabled", "[]"),
])
def test_invalid_types_and_numbers_no_column_can_hold_are_400(world, field, value):
    text = json.dumps({**RULE, field: 0}).replace(f'"{field}": 0', f'"{field}": {value}')
    r = world.client.post("/api/v1/alerts/rules", content=text, headers={
        **world.a.h("admin"), "Content-Type": "application/json"})
    assert_problem(r, 400, field)


def test_huge_quota_numbers_are_400(world):
    r = world.client.put("/api/v1/quotas/big", json={"monthly_requests": 2**70},
                         headers=world.a.h("admin"))
    assert_problem(r, 400, "monthly_requests")
    r = world.client.delete(f"/api/v1/alerts/rules/{2**70}", headers=world.a.h("admin"))
    assert_problem(r, 400, "rule_id")


def test_a_body_nested_past_the_limit_is_400_naming_the_limit(world):
    deep = '{"name": ' + "[" * 5000 + "]" * 5000 + "}"
    r = world.client.post("/api/v1/keys", content=deep, headers={
        **world.a.h("admin"), "Content-Type": "application/json"})
    body = assert_problem(r, 400, "body")
    assert str(MAX_JSON_DEPTH) in body["detail"]


def test_malformed_json_is_400_naming_the_body(world):
    r = world.client.post("/api/v1/keys", content=b'{"kind": "read",', headers={
        **world.a.h("admin"), "Content-Type": "application/json"})
    assert_problem(r, 400, "body")


@pytest.fixture(scope="module")
def real_server(stack, world):
    """Over a real socket: a 413 must reach a client that is still sending its body."""
    settings = QuerySettings(database=DatabaseSettings(url=stack.database_url),
                             lake=LakeSettings(uri=str(world.lake)), pool_max_size=2)
    with served(create_app(settings)) as url:
        yield url


@pytest.mark.parametrize("size", [MAX_BODY_BYTES + 1, 5 * 1024 * 1024, 50 * 1024 * 1024])
def test_an_oversized_body_gets_a_readable_413(real_server, world, size):
    r = httpx.post(real_server + "/api/v1/alerts/rules", content=b"x" * size, timeout=30,
                   headers={**world.a.h("admin"), "Content-Type": "application/json"})
    body = assert_problem(r, 413, "body")
    assert str(MAX_BODY_BYTES) in body["detail"]


def test_an_oversized_chunked_body_gets_a_readable_413(real_server, world):
    def chunks():
        for _ in range(64):
            yield b"x" * 16384

    r = httpx.post(real_server + "/api/v1/keys", content=chunks(), timeout=30,
                   headers={**world.a.h("admin"), "Content-Type": "application/json"})
    assert_problem(r, 413, "body")


def test_a_raw_nul_in_the_request_line_never_reaches_a_handler(real_server, world):
    host, port = real_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /api/v1/quotas/a\x00b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:80]
