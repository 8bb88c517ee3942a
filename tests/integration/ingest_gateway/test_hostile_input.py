"""Hostile HTTP input against a real uvicorn gateway: every answer a readable problem+json 4xx.

Oversized bodies are sent by real clients (httpx, ``http.client`` as the agent uses, a raw
socket) that write the whole body before reading: they must get the 413, not a reset.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from schemas.validation import MAX_JSON_DEPTH
from tests.integration.ingest_gateway.helpers import event, read_topic

PROBLEM = "application/problem+json"
SIX_MB = 6 * 1024 * 1024


def assert_problem(resp: httpx.Response, status: int, fragment: str = "") -> dict:
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    body = resp.json()
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    assert body["status"] == status
    assert fragment in body["detail"], body
    return body


def six_mb_body() -> bytes:
    filler = "x" * 400
    events = [event(i, user_agent=filler) for i in range(SIX_MB // 500)]
    body = orjson.dumps(events)
    assert len(body) > SIX_MB
    return body


@pytest.fixture(scope="module")
def big_body() -> bytes:
    return six_mb_body()


def test_six_megabytes_get_a_readable_413_with_content_length(gateway, keys, big_body):
    resp = gateway.post(None, keys.write, raw=big_body, timeout=60)
    body = assert_problem(resp, 413, "limit of")
    assert body["invalid_params"][0]["name"] == "body"


def test_six_megabytes_chunked_get_a_readable_413(gateway, keys, big_body):
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big_body), 64 * 1024):
            yield big_body[i:i + 64 * 1024]

    resp = httpx.post(f"{gateway.url}/api/v1/events/batch", content=chunks(), timeout=60,
                      headers={"X-Api-Key": keys.write, "Content-Type": "application/json"})
    assert_problem(resp, 413, "limit of")


def test_six_megabytes_without_a_key_get_a_readable_401(gateway, big_body):
    resp = gateway.post(None, None, raw=big_body, timeout=60)
    assert_problem(resp, 401, "missing key")


def test_the_agents_http_client_reads_the_413(gateway, keys, big_body):
    parts = urlsplit(gateway.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", "/api/v1/events/batch", body=big_body,
                     headers={"X-Api-Key": keys.write, "Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 413
        assert resp.getheader("content-type", "").startswith(PROBLEM)
        assert orjson.loads(resp.read())["status"] == 413
    finally:
        conn.close()


def send_slowly_then_read(url: str, head: str, body: bytes) -> bytes:
    """A client that writes its whole body, in pieces, before reading the answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode())
        for i in range(0, len(body), 1 << 20):
            sock.sendall(body[i:i + (1 << 20)])
            time.sleep(0.05)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            assert data, "connection closed before an answer"
            answer += data
    return answer


@pytest.mark.parametrize("key", [True, False])
def test_a_slow_client_asking_to_close_reads_the_refusal_not_a_reset(gateway, keys, big_body,
                                                                     key):
    """``Connection: close``: answering unread, then closing, would reset this client."""
    head = ("POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + (f"X-Api-Key: {keys.write}\r\n" if key else "")
            + "Content-Type: application/json\r\n")
    answer = send_slowly_then_read(gateway.url, head, big_body)
    assert answer.startswith(b"HTTP/1.1 413 " if key else b"HTTP/1.1 401 "), answer[:200]
    assert b"content-type: application/problem+json" in answer.lower()


def test_deep_nesting_is_a_400_naming_the_limit(gateway, keys):
    deep = b'[{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]"
    body = assert_problem(gateway.post(None, keys.write, raw=deep), 400,
                          f"nested deeper than {MAX_JSON_DEPTH} levels")
    assert body["invalid_params"] == [
        {"name": "body", "reason": f"nested deeper than {MAX_JSON_DEPTH} levels"}]


def test_one_nul_event_among_ten_is_rejected_naming_the_field(stack, gateway, keys):
    events = [event(i) for i in range(10)]
    events[4]["path"] = "/users/4\x00"
    resp = gateway.post(events, keys.write)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["accepted"] == 9
    assert body["rejected"] == [{"index": 4, "errors": [
        "path: contains U+0000 (NUL), which PostgreSQL cannot store"]}]
    got = read_topic(stack.kafka_bootstrap, gateway.topic, 9)
    assert sorted(r.value["event_id"] for r in got) == sorted(
        e["event_id"] for i, e in enumerate(events) if i != 4)
    assert all("\x00" not in r.value["path"] for r in got)


def test_unknown_routes_and_methods_are_problem_json(gateway):
    assert_problem(httpx.get(f"{gateway.url}/nope"), 404)
    assert_problem(httpx.get(f"{gateway.url}/api/v1/events/batch"), 405)
