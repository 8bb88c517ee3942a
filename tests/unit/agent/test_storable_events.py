"""The agent only builds events the gateway accepts and every sink stores."""

import math
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.capture import CaptureOptions, build_event, consumer_id, hash_consumer, storable_text
from schemas.event import MAX_API_KEY, MAX_PATH, MAX_USER_AGENT
from schemas.storable import text_problem
from schemas.validation import validate_batch

pytestmark = pytest.mark.unit

TEXT_FIELDS = ("event_id", "method", "path", "endpoint", "api_key", "ip", "user_agent",
               "country", "function")


def captured(**overrides):
    fields = dict(event_id="e-1", timestamp=time.time(), method="GET", path="/p",
                  endpoint=None, status_code=200, latency_ms=1.0, request_bytes=0,
                  response_bytes=0, api_key=None, ip=None, user_agent=None, country=None,
                  function=None)
    fields.update(overrides)
    return build_event(**fields)


def gateway_verdict(event):
    now_us = time.time_ns() // 1000
    return validate_batch(orjson.dumps([event]), project_id="p", received_at_us=now_us)


@pytest.mark.parametrize(("value", "limit", "expected"), [
    ("plain", 10, "plain"),
    ("a\x00b\x00", 10, "ab"),
    ("x" * 20, 5, "xxxxx"),
    ("straße", 10, "straße"),
    ("a\ud800b", 10, "a?b"),
    ("\udfff\x00é", 10, "?é"),
    ("\x00" * 3, 10, ""),
])
def test_storable_text_strips_nul_replaces_surrogates_and_cuts(value, limit, expected):
    assert storable_text(value, limit) == expected


def test_a_percent_00_path_and_nul_headers_still_make_an_accepted_event():
    ev = captured(path="/files/a\x00.txt", endpoint="/files/{name}\x00",
                  user_agent="curl\x00/8" + "u" * 1000, api_key="k\x00", function="f\x00",
                  method="get\x00")
    assert (ev["path"], ev["endpoint"], ev["method"]) == ("/files/a.txt", "/files/{name}", "GET")
    assert len(ev["user_agent"]) == MAX_USER_AGENT and "\x00" not in ev["user_agent"]
    batch = gateway_verdict(ev)
    assert batch.rejected == [] and len(batch.records) == 1


def test_values_out_of_range_are_clamped_or_left_out():
    ev = captured(latency_ms=math.inf, request_bytes=-5, response_bytes=2**70,
                  ip="not an ip; drop table", country="ÄÖ", path="relative")
    assert ev["latency_ms"] == 86_400_000.0
    assert (ev["request_bytes"], ev["response_bytes"]) == (0, 2**53)
    assert "ip" not in ev and "country" not in ev
    assert ev["path"] == "/relative"
    assert captured(latency_ms=math.nan)["latency_ms"] == 0
    assert gateway_verdict(ev).rejected == []


def test_consumer_ids_with_surrogates_hash_and_plain_ones_are_cut():
    assert len(hash_consumer("k\ud800", "key")) == 24
    plain = CaptureOptions(hash_consumer=False)
    assert consumer_id("c\x00" * 200, plain) == "c" * MAX_API_KEY
    assert consumer_id("\x00", plain) is None


_any_text = st.text(alphabet=st.characters(min_codepoint=0, exclude_categories=()), max_size=3000)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=_any_text, endpoint=st.none() | _any_text, method=_any_text,
       user_agent=st.none() | _any_text, api_key=st.none() | _any_text,
       ip=st.none() | _any_text, country=st.none() | _any_text,
       function=st.none() | _any_text, event_id=st.text(min_size=1, max_size=100),
       latency=st.floats(allow_nan=True, allow_infinity=True),
       size=st.integers(min_value=-(2**80), max_value=2**80))
def test_whatever_the_request_held_the_event_is_storable(path, endpoint, method, user_agent,
                                                         api_key, ip, country, function,
                                                         event_id, latency, size):
    ev = captured(path=path, endpoint=endpoint, method=method, user_agent=user_agent,
                  api_key=api_key, ip=ip, country=country, function=function,
                  event_id=event_id, latency_ms=latency, request_bytes=size,
                  response_bytes=size)
    for name in TEXT_FIELDS:
        if name in ev:
            assert text_problem(ev[name]) is None, (name, ev[name])
    assert len(ev["path"]) <= MAX_PATH
    body = orjson.dumps([ev])  # never raises: no surrogates left
    batch = validate_batch(body, project_id="p", received_at_us=time.time_ns() // 1000)
    # Only the method may still be refused (an unknown verb), never for storability.
    for rejection in batch.rejected:
        assert all(e.startswith(("method:", "event_id:")) for e in rejection.errors), rejection


def test_a_percent_00_request_through_the_wsgi_middleware_is_accepted(make_sender,
                                                                      fake_gateway):
    from agent.wsgi import TurnstileWSGI

    def app(environ, start_response):
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]

    sender = make_sender()
    middleware = TurnstileWSGI(app, sender, CaptureOptions(hash_consumer=False))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/files/a\x00b", "SCRIPT_NAME": "",
               "REMOTE_ADDR": "10.0.0.1", "HTTP_USER_AGENT": "ua\x00", "CONTENT_LENGTH": "-3",
               "HTTP_X_API_KEY": "cust\x00-1"}
    body = middleware(environ, lambda status, headers, exc_info=None: None)
    list(body)
    body.close()
    assert sender.flush(5)
    (ev,) = fake_gateway.events()
    assert (ev["path"], ev["user_agent"], ev["api_key"], ev["request_bytes"]) == (
        "/files/ab", "ua", "cust-1", 0)
    assert gateway_verdict(ev).rejected == []
