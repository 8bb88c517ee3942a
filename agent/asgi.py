"""ASGI middleware (FastAPI, Starlette, any ASGI app): one event per HTTP request.

Wraps ``receive`` and ``send`` to size the request and response as they stream, takes the
route template from the route Starlette/FastAPI matched (``scope["route"]``, with any mount
prefix), records exceptions as 500 and re-raises them, and flushes the sender when the
server's lifespan shuts down. Work per request is a handful of dict operations; the
serialisation and the network happen on the sender's thread.

    app.add_middleware(TurnstileASGI, sender=Sender())
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from agent.capture import CaptureOptions, build_event, client_ip, consumer_id, resolve_options
from agent.sender import Sender

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def route_template(scope: Scope) -> str | None:
    """The matched route as a template (``/v1/users/{user_id}``), or None when none matched.

    ``root_path`` holds the server's prefix and every mount prefix crossed on the way in, as
    ``path`` does, so the template lines up with the path.
    """
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return None
    root: str = scope.get("root_path", "")
    if type(route).__name__ == "Mount":  # a mounted non-router app (static files, …)
        return root + "/{path}"
    return root + path_format


class TurnstileASGI:
    """Captures every HTTP request of the wrapped app into ``sender``."""

    def __init__(
        self,
        app: ASGIApp,
        sender: Sender | None = None,
        options: CaptureOptions | None = None,
    ) -> None:
        self.app = app
        self.sender = sender or Sender()
        self.options = resolve_options(options, self.sender.settings)
        self._enabled = self.sender.settings.enabled
        opts = self.options
        self._consumer_header = (opts.consumer_header or "").lower().encode() or None
        self._country_header = (opts.country_header or "").lower().encode() or None
        self._xff = opts.trusted_proxies > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" or not self._enabled:
            if kind == "lifespan":
                await self.app(scope, receive, self._lifespan_send(send))
            else:
                await self.app(scope, receive, send)
            return
        timestamp = time.time()
        started = time.perf_counter()
        sizes = [0, 0]  # request bytes, response bytes
        status = [0]

        async def counting_receive() -> Message:
            message = await receive()
            body = message.get("body")
            if body:
                sizes[0] += len(body)
            return message

        async def counting_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                body = message.get("body")
                if body:
                    sizes[1] += len(body)
            elif kind == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except BaseException:
            if not status[0]:
                status[0] = 500
            self._record(scope, timestamp, started, status[0], sizes)
            raise
        self._record(scope, timestamp, started, status[0] or 500, sizes)

    def _record(
        self, scope: Scope, timestamp: float, started: float,
        status: int, sizes: list[int],
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        user_agent = consumer = country = forwarded = None
        want_consumer = self._consumer_header
        want_country = self._country_header
        for name, value in scope.get("headers", ()):
            if name == b"user-agent":
                user_agent = value
            elif name == want_consumer:
                consumer = value
            elif name == want_country:
                country = value
            elif name == b"x-forwarded-for" and self._xff:
                forwarded = value
        opts = self.options
        raw_consumer = opts.identify(scope) if opts.identify else (
            consumer.decode("latin-1") if consumer else None
        )
        ip = None
        if opts.capture_ip:
            peer = scope.get("client")
            ip = client_ip(peer[0] if peer else None,
                           forwarded.decode("latin-1") if forwarded else None,
                           opts.trusted_proxies)
        endpoint_fn = scope.get("endpoint")
        sender = self.sender
        sender.record(build_event(
            event_id=sender.new_event_id(),
            timestamp=timestamp,
            method=scope["method"],
            path=scope.get("path", "/"),
            endpoint=route_template(scope),
            status_code=status,
            latency_ms=latency_ms,
            request_bytes=sizes[0],
            response_bytes=sizes[1],
            api_key=consumer_id(raw_consumer, opts),
            ip=ip,
            user_agent=user_agent.decode("latin-1") if user_agent and opts.capture_user_agent
            else None,
            country=country.decode("latin-1").upper() if country else None,
            function=getattr(endpoint_fn, "__name__", None),
        ))

    def _lifespan_send(self, send: Send) -> Send:
        """Flush the sender before the server is told shutdown is complete."""

        async def lifespan_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await asyncio.to_thread(self.sender.close)
            await send(message)

        return lifespan_send
