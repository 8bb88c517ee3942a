import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from agent.asgi import TurnstileASGI
from agent.capture import CaptureOptions, hash_consumer
from tests.unit.agent.conftest import TEST_HASH_KEY

pytestmark = pytest.mark.unit


def make_app(sender, options=None):
    app = FastAPI()
    v2 = APIRouter(prefix="/v2")

    @app.get("/users/{user_id}")
    def get_user(user_id: int):
        return {"id": user_id}

    @app.post("/upload")
    async def upload(payload: dict):
        return {"n": len(payload)}

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaput")

    @app.get("/stream")
    def stream():
        return StreamingResponse(iter([b"a" * 100, b"b" * 50]), media_type="text/plain")

    @v2.get("/orders/{order_id}/items")
    def items(order_id: str):
        return []

    app.include_router(v2)
    app.add_middleware(TurnstileASGI, sender=sender, options=options)
    return app


def captured(sender, gw, n):
    assert sender.flush(5)
    events = gw.events()
    assert len(events) == n, events
    return events


def test_fastapi_requests_become_events_with_route_templates(make_sender, fake_gateway):
    sender = make_sender()
    client = TestClient(make_app(sender))
    client.get("/users/42", headers={"X-Api-Key": "cust-secret", "User-Agent": "ua/1"})
    client.get("/v2/orders/abc/items?x=1")
    client.get("/nope")
    ev = captured(sender, fake_gateway, 3)
    first = ev[0]
    assert first["method"] == "GET" and first["path"] == "/users/42"
    assert first["endpoint"] == "/users/{user_id}"
    assert first["status_code"] == 200
    assert first["response_bytes"] == len(b'{"id":42}')
    assert first["api_key"] == hash_consumer("cust-secret", TEST_HASH_KEY)
    assert first["user_agent"] == "ua/1"
    assert first["function"] == "get_user"
    assert first["latency_ms"] >= 0 and first["timestamp"] > 1.7e9
    assert ev[1]["endpoint"] == "/v2/orders/{order_id}/items"
    assert ev[1]["path"] == "/v2/orders/abc/items"
    assert ev[2]["status_code"] == 404 and "endpoint" not in ev[2]


def test_request_and_streamed_response_sizes(make_sender, fake_gateway):
    sender = make_sender()
    client = TestClient(make_app(sender))
    body = b'{"a": 1, "b": 2}'
    client.post("/upload", content=body, headers={"Content-Type": "application/json"})
    client.get("/stream")
    up, stream = captured(sender, fake_gateway, 2)
    assert up["request_bytes"] == len(body)
    assert stream["response_bytes"] == 150


def test_exceptions_are_recorded_as_500_and_reraised(make_sender, fake_gateway):
    sender = make_sender()
    client = TestClient(make_app(sender))
    with pytest.raises(RuntimeError, match="kaput"):
        client.get("/boom")
    (ev,) = captured(sender, fake_gateway, 1)
    assert ev["status_code"] == 500 and ev["endpoint"] == "/boom"


def test_consumer_function_ip_and_country_options(make_sender, fake_gateway):
    sender = make_sender()
    opts = CaptureOptions(identify=lambda scope: "acme", hash_consumer=False, trusted_proxies=1,
                          country_header="cf-ipcountry")
    client = TestClient(make_app(sender, opts))
    client.get("/users/1", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9",
                                    "CF-IPCountry": "de"})
    (ev,) = captured(sender, fake_gateway, 1)
    assert ev["api_key"] == "acme"
    assert ev["ip"] == "203.0.113.9"
    assert ev["country"] == "DE"


def test_forwarded_for_is_ignored_by_default(make_sender, fake_gateway):
    sender = make_sender()
    client = TestClient(make_app(sender))
    client.get("/users/1", headers={"X-Forwarded-For": "6.6.6.6"})
    (ev,) = captured(sender, fake_gateway, 1)
    assert ev["ip"] == "testclient"  # the peer Starlette's test client reports


def test_starlette_mounts_prefix_the_template(make_sender, fake_gateway):
    sender = make_sender()

    async def show(request):
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/things/{tid}", show)])
    app = Starlette(routes=[Mount("/api", app=inner)])
    client = TestClient(TurnstileASGI(app, sender))
    client.get("/api/things/7")
    (ev,) = captured(sender, fake_gateway, 1)
    assert ev["endpoint"] == "/api/things/{tid}"
    assert ev["path"] == "/api/things/7"


def test_lifespan_shutdown_flushes_the_sender(make_sender, fake_gateway):
    sender = make_sender(flush_interval_s=30)
    with TestClient(make_app(sender)) as client:
        client.get("/users/1")
    assert len(fake_gateway.events()) == 1
