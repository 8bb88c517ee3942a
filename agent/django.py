"""Django middleware: one event per request, route template from ``resolver_match.route``.

Add ``"agent.django.TurnstileMiddleware"`` first in ``MIDDLEWARE``. Configure it with the
setting ``TURNSTILE_AGENT = {"sender": Sender(...), "options": CaptureOptions(...)}`` (both
optional; the sender otherwise comes from ``TURNSTILE_AGENT_*`` environment variables).
Django turns view exceptions into 500 responses below this middleware, so those arrive as
500s; an exception that still propagates is recorded as 500 and re-raised. Streaming
responses are sized as they stream and recorded when the stream ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from agent.capture import (
    CaptureOptions,
    build_event,
    client_ip,
    consumer_id,
    resolve_options,
    template_from_rule,
)
from agent.sender import Sender

_shared_sender: Sender | None = None


def _default_sender() -> Sender:
    global _shared_sender  # noqa: PLW0603 - one sender per process, created on first use
    if _shared_sender is None:
        _shared_sender = Sender()
    return _shared_sender


def _endpoint(request: Any) -> tuple[str | None, str | None]:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None, None
    route = getattr(match, "route", None)
    function = getattr(match, "view_name", None) or None
    if not route or "(?P<" in route or route.startswith("^"):  # re_path: no clean template
        return None, function
    return template_from_rule(route), function


class TurnstileMiddleware:
    """New-style Django middleware capturing every request into the sender."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django.conf import settings

        config: dict[str, Any] = dict(getattr(settings, "TURNSTILE_AGENT", {}) or {})
        self.get_response = get_response
        self.sender: Sender = config.get("sender") or _default_sender()
        self.options: CaptureOptions = resolve_options(config.get("options"),
                                                       self.sender.settings)
        header = (self.options.consumer_header or "").upper().replace("-", "_")
        self._consumer_key = f"HTTP_{header}" if header else None
        country = (self.options.country_header or "").upper().replace("-", "_")
        self._country_key = f"HTTP_{country}" if country else None

    def __call__(self, request: Any) -> Any:
        if not self.sender.settings.enabled:
            return self.get_response(request)
        timestamp = time.time()
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        except BaseException:
            self._record(request, timestamp, started, 500, 0)
            raise
        if getattr(response, "streaming", False):
            self._wrap_stream(request, response, timestamp, started)
        else:
            self._record(request, timestamp, started, response.status_code, len(response.content))
        return response

    def _wrap_stream(self, request: Any, response: Any, timestamp: float, started: float) -> None:
        status = response.status_code
        content = response.streaming_content

        if getattr(response, "is_async", False):
            async def counted_async() -> AsyncIterator[bytes]:
                size = 0
                try:
                    async for chunk in content:
                        size += len(chunk)
                        yield chunk
                finally:
                    self._record(request, timestamp, started, status, size)

            response.streaming_content = counted_async()
            return

        def counted() -> Iterator[bytes]:
            size = 0
            try:
                for chunk in content:
                    size += len(chunk)
                    yield chunk
            finally:
                self._record(request, timestamp, started, status, size)

        response.streaming_content = counted()

    def _record(
        self, request: Any, timestamp: float, started: float, status: int, response_bytes: int
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        meta = request.META
        opts = self.options
        raw_consumer = opts.identify(request) if opts.identify else (
            meta.get(self._consumer_key) if self._consumer_key else None
        )
        try:
            request_bytes = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            request_bytes = 0
        ip = None
        if opts.capture_ip:
            ip = client_ip(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"),
                           opts.trusted_proxies)
        endpoint, function = _endpoint(request)
        sender = self.sender
        sender.record(build_event(
            event_id=sender.new_event_id(),
            timestamp=timestamp,
            method=request.method or "GET",
            path=request.path,
            endpoint=endpoint,
            status_code=status,
            latency_ms=latency_ms,
            request_bytes=request_bytes,
            response_bytes=response_bytes,
            api_key=consumer_id(raw_consumer, opts),
            ip=ip,
            user_agent=meta.get("HTTP_USER_AGENT") if opts.capture_user_agent else None,
            country=(meta.get(self._country_key) or "").upper() if self._country_key else None,
            function=function,
        ))
