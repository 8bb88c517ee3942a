"""Demo traffic: a small shop API instrumented with the real agent, called by fake customers.

The events therefore take the same path as a customer's would: ASGI middleware → sender
→ gateway → Kafka → speed layer / lake. Latencies are lognormal per endpoint, a few
consumers are much busier than the rest, errors come at a low base rate with an
occasional burst, so the dashboard has something worth looking at.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from fastapi import FastAPI, HTTPException, Response

from agent import AgentSettings, CaptureOptions, Sender, TurnstileASGI

CONSUMERS = (
    ["acme-mobile"] * 30 + ["globex-backend"] * 20 + ["initech-etl"] * 10
    + [f"startup-{i:02d}" for i in range(40)]
)
COUNTRIES = ["US", "DE", "GB", "FR", "JP", "BR", "IN", "CA", "NL", "AU"]


@dataclass
class Burst:
    """A short window in which one endpoint fails and slows down."""

    until: float = 0.0
    endpoint: str = ""


def build_shop_app(rng: random.Random, burst: Burst) -> FastAPI:
    """The demo API: latency and failures are simulated, the routing is real FastAPI."""
    app = FastAPI(title="Acme Shop (Turnstile demo)")

    async def work(endpoint: str, median_ms: float) -> None:
        slow = 4.0 if burst.endpoint == endpoint and time.monotonic() < burst.until else 1.0
        await asyncio.sleep(rng.lognormvariate(0, 0.6) * median_ms * slow / 1000)
        if burst.endpoint == endpoint and time.monotonic() < burst.until and rng.random() < 0.3:
            raise HTTPException(503, "upstream timeout")
        if rng.random() < 0.01:
            raise HTTPException(500, "internal error")

    @app.get("/v1/products")
    async def products() -> dict[str, object]:
        await work("/v1/products", 12)
        return {"items": list(range(20))}

    @app.get("/v1/products/{product_id}")
    async def product(product_id: int) -> dict[str, object]:
        await work("/v1/products/{product_id}", 6)
        if product_id % 37 == 0:
            raise HTTPException(404, "no such product")
        return {"id": product_id}

    @app.get("/v1/search")
    async def search(q: str = "") -> dict[str, object]:
        await work("/v1/search", 45)
        return {"q": q, "hits": []}

    @app.post("/v1/orders")
    async def create_order() -> Response:
        await work("/v1/orders", 80)
        return Response(status_code=201, content=b'{"id": 1}', media_type="application/json")

    @app.get("/v1/orders/{order_id}")
    async def order(order_id: int) -> dict[str, object]:
        await work("/v1/orders/{order_id}", 9)
        return {"id": order_id}

    @app.post("/v1/checkout")
    async def checkout() -> dict[str, object]:
        await work("/v1/checkout", 150)
        if rng.random() < 0.04:
            raise HTTPException(402, "payment declined")
        return {"ok": True}

    return app


_CALLS: list[tuple[int, str, Callable[[random.Random], str]]] = [
    (40, "GET", lambda r: f"/v1/products/{r.randint(1, 5000)}"),
    (20, "GET", lambda r: "/v1/products"),
    (15, "GET", lambda r: f"/v1/search?q={r.choice(['shoes', 'hats', 'socks'])}"),
    (10, "GET", lambda r: f"/v1/orders/{r.randint(1, 10**6)}"),
    (8, "POST", lambda r: "/v1/orders"),
    (4, "POST", lambda r: "/v1/checkout"),
]


async def run_demo(
    gateway_url: str, write_key: str, rate_per_s: float, duration_s: float | None, seed: int = 7
) -> int:
    """Send traffic until ``duration_s`` passes (forever when None); returns requests made."""
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    burst = Burst()
    sender = Sender(
        AgentSettings(url=gateway_url, write_key=write_key, flush_interval_s=1.0)  # type: ignore[arg-type]
    )
    app = TurnstileASGI(
        build_shop_app(rng, burst),
        sender=sender,
        options=CaptureOptions(hash_consumer=False, country_header="cf-ipcountry"),
    )
    weights = [w for w, _, _ in _CALLS]
    made = 0
    start = time.monotonic()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.local") as client:

        async def call() -> None:
            _, method, path = rng.choices(_CALLS, weights)[0]
            headers = {"x-api-key": rng.choice(CONSUMERS), "cf-ipcountry": rng.choice(COUNTRIES)}
            await client.request(method, path(rng), headers=headers)

        tasks: set[asyncio.Task[None]] = set()
        while duration_s is None or time.monotonic() - start < duration_s:
            if rng.random() < 0.0005 and time.monotonic() > burst.until:
                burst.until = time.monotonic() + 30
                burst.endpoint = rng.choice(["/v1/search", "/v1/checkout"])
            task = asyncio.create_task(call())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            made += 1
            await asyncio.sleep(rng.expovariate(rate_per_s))
        await asyncio.gather(*tasks, return_exceptions=True)
    sender.close()
    return made

