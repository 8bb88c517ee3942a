"""Agent → gateway → Kafka with a FastAPI app under test, including a broker outage."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import httpx
import orjson
import pytest
from fastapi import FastAPI

from agent.asgi import TurnstileASGI
from agent.capture import hash_consumer
from agent.sender import Sender
from agent.settings import AgentSettings
from schemas.records import partitions_for
from tests.integration.ingest_gateway.helpers import event, read_topic

CONSUMERS = [f"customer-{i}" for i in range(7)]


def api_under_test(sender: Sender) -> TurnstileASGI:
    app = FastAPI()

    @app.get("/users/{user_id}/orders/{order_id}")
    async def order(user_id: int, order_id: str):
        return {"user": user_id, "order": order_id}

    @app.post("/users/{user_id}/orders")
    async def create_order(user_id: int):
        return {"ok": True}

    return TurnstileASGI(app, sender)


async def _call(app, i: int) -> None:
    post = i % 10 == 0
    path = f"/users/{i % 97}/orders" if post else f"/users/{i % 97}/orders/o{i}"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": "POST" if post else "GET", "scheme": "http", "path": path,
        "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"api.test"), (b"user-agent", b"it/1"),
                    (b"x-api-key", CONSUMERS[i % len(CONSUMERS)].encode())],
        "client": ("198.51.100.7", 40000), "server": ("api.test", 80),
    }
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    await app(scope, receive, send)


def drive(app, start: int, count: int) -> None:
    """Serve ``count`` requests through the real FastAPI app and the middleware."""
    async def main():
        for i in range(start, start + count):
            await _call(app, i)
    asyncio.run(main())


HASH_KEY = "integration-consumer-hash-key"


def agent_settings(gateway, keys, **overrides) -> AgentSettings:
    base = {"url": gateway.url, "write_key": keys.write, "consumer_hash_key": HASH_KEY,
            "batch_size": 1000,
            "flush_interval_s": 0.2, "max_queue_events": 100_000}
    return AgentSettings(**{**base, **overrides})


def test_fifty_thousand_requests_arrive_with_the_right_fields(stack, gateway, keys):
    sender = Sender(agent_settings(gateway, keys))
    try:
        drive(api_under_test(sender), 0, 50_000)
        assert sender.flush(60), sender.stats()
    finally:
        sender.close(timeout=5)
    stats = sender.stats()
    assert (stats.sent_events, stats.dropped, stats.invalid_events) == (50_000, 0, 0), stats

    got = read_topic(stack.kafka_bootstrap, gateway.topic, 50_000, timeout=60)
    assert len(got) == 50_000
    assert len({r.value["event_id"] for r in got}) == 50_000
    hashed = {hash_consumer(c, HASH_KEY) for c in CONSUMERS}
    endpoints = Counter()
    for r in got:
        v = r.value
        assert v["project_id"] == keys.project
        assert v["api_key"] in hashed
        # The record's key is its first event's; every event's own key maps to its partition.
        (partition,) = partitions_for([f"{keys.project}:{v['api_key']}".encode()],
                                      gateway.partitions).tolist()
        assert r.partition == partition
        assert v["status_code"] == 200
        assert v["ip"] == "198.51.100.7" and v["user_agent"] == "it/1"
        assert v["latency_ms"] >= 0
        endpoints[(v["method"], v["endpoint"])] += 1
    assert endpoints == {
        ("GET", "/users/{user_id}/orders/{order_id}"): 45_000,
        ("POST", "/users/{user_id}/orders"): 5_000,
    }


def test_broker_outage_gives_503_and_the_agent_delivers_everything_after(
    stack, start_gateway, keys
):
    if stack.kafka is None:
        pytest.skip("external Kafka: the test cannot stop it")
    gateway = start_gateway(delivery_timeout_s=2.0, message_timeout_ms=30_000)
    sender = Sender(agent_settings(gateway, keys, backoff_base_s=0.2, backoff_max_s=2.0))
    app = api_under_test(sender)
    try:
        drive(app, 0, 3_000)
        assert sender.flush(30)
        stack.kafka.stop()
        try:
            drive(app, 3_000, 3_000)  # the host app is not slowed or broken by the outage
            started = time.monotonic()
            direct = gateway.post([event()], keys.write, timeout=30)
            took = time.monotonic() - started
            assert direct.status_code == 503, direct.text
            assert int(direct.headers["Retry-After"]) >= 1
            assert took < 2.0 + 1.5, f"503 took {took:.1f} s"
            deadline = time.monotonic() + 20
            while sender.stats().retries == 0:
                assert time.monotonic() < deadline, sender.stats()
                time.sleep(0.1)
            assert sender.stats().queued >= 3_000
        finally:
            stack.kafka.start()
        drive(app, 6_000, 3_000)
        assert sender.flush(60), sender.stats()
    finally:
        sender.close(timeout=5)
    stats = sender.stats()
    assert stats.dropped == 0 and stats.sent_events == 9_000, stats

    got = read_topic(stack.kafka_bootstrap, gateway.topic, 9_000, timeout=60, settle=3.0)
    by_event: dict[str, list[str]] = defaultdict(list)
    for r in got:
        by_event[r.value["event_id"]].append(r.value["batch_id"])
    # The direct post's event (id "ev-…") may land too: its 503 came before Kafka's ack.
    agent_events = [e for e in by_event if not e.startswith("ev-")]
    assert len(agent_events) == 9_000
    duplicates = {e: ids for e, ids in by_event.items() if len(ids) > 1}
    for ids in duplicates.values():
        assert len(set(ids)) == 1, "a duplicate that is not a retry of the same batch"
    print(f"\nbroker outage: {len(got)} records, {len(duplicates)} duplicated events "
          f"(retried batches), agent retries {stats.retries}")


def test_503_body_and_metrics_while_the_queue_is_full(start_gateway, keys):
    gateway = start_gateway(queue_max_messages=1000, max_events=1000,
                            rate_limit_burst_events=10_000)
    resp = gateway.post([event(i) for i in range(1000)], keys.write)
    assert resp.status_code == 202
    # A batch larger than the whole local queue can never be taken: 503 at once, no hang.
    # (The queue counts records, ~one per partition a batch touches, and their bytes.)
    gw2 = start_gateway(queue_max_kbytes=1024, max_events=8000, rate_limit_burst_events=10_000)
    started = time.monotonic()
    resp = gw2.post([event(i, path=f"/p/{i}/" + "x" * 150) for i in range(8000)], keys.write)
    assert resp.status_code == 503
    assert time.monotonic() - started < 2
    assert "queue is full" in resp.json()["detail"]
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["Retry-After"]
    text = httpx.get(f"{gw2.url}/metrics").text
    assert 'turnstile_gateway_unavailable_total{cause="queue_full"}' in text
    assert orjson.loads(resp.content)["status"] == 503
