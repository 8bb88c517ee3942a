"""WSGI middleware (Flask, any WSGI app): one event per request, streamed bodies sized.

The response iterable is wrapped, so a streaming response is sized chunk by chunk and the
event is recorded when the server closes it (latency covers the whole response). Flask's
route template is its ``url_rule``: ``instrument_flask`` registers a first-running
``before_request`` hook that stores it in the environ for the middleware to read.

    instrument_flask(app, Sender())
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from agent.capture import (
    CaptureOptions,
    build_event,
    client_ip,
    consumer_id,
    resolve_options,
    template_from_rule,
)
from agent.sender import Sender

ENDPOINT_KEY: Final = "turnstile.endpoint"
FUNCTION_KEY: Final = "turnstile.function"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class _Exchange:
    """One request in flight: what the start_response and the body iterator saw."""

    __slots__ = ("timestamp", "started", "status", "response_bytes", "recorded")

    def __init__(self) -> None:
        self.timestamp = time.time()
        self.started = time.perf_counter()
        self.status = 0
        self.response_bytes = 0
        self.recorded = False


class _SizedBody:
    """Wraps the app's iterable: counts bytes, records the event on close, keeps close()."""

    def __init__(
        self, body: Iterable[bytes], done: Callable[[], None], exchange: _Exchange
    ) -> None:
        self._body = body
        self._done = done
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        exchange = self._exchange
        try:
            for chunk in self._body:
                exchange.response_bytes += len(chunk)
                yield chunk
        except BaseException:
            exchange.status = 500 if not exchange.status else exchange.status
            self.close()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class TurnstileWSGI:
    """Captures every request of the wrapped WSGI app into ``sender``."""

    def __init__(
        self, app: WSGIApp, sender: Sender | None = None, options: CaptureOptions | None = None
    ) -> None:
        self.app = app
        self.sender = sender or Sender()
        self.options = resolve_options(options, self.sender.settings)
        self._enabled = self.sender.settings.enabled
        header = (self.options.consumer_header or "").upper().replace("-", "_")
        self._consumer_key = f"HTTP_{header}" if header else None
        country = (self.options.country_header or "").upper().replace("-", "_")
        self._country_key = f"HTTP_{country}" if country else None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._enabled:
            return self.app(environ, start_response)
        exchange = _Exchange()

        def capturing_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            exchange.status = int(status[:3])
            return start_response(status, headers, exc_info)

        def done() -> None:
            if not exchange.recorded:
                exchange.recorded = True
                self._record(environ, exchange)

        try:
            body = self.app(environ, capturing_start_response)
        except BaseException:
            exchange.status = 500
            done()
            raise
        return _SizedBody(body, done, exchange)

    def _record(self, environ: Environ, exchange: _Exchange) -> None:
        latency_ms = (time.perf_counter() - exchange.started) * 1000.0
        opts = self.options
        raw_consumer = opts.identify(environ) if opts.identify else (
            environ.get(self._consumer_key) if self._consumer_key else None
        )
        try:
            request_bytes = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            request_bytes = 0
        ip = None
        if opts.capture_ip:
            ip = client_ip(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"),
                           opts.trusted_proxies)
        sender = self.sender
        sender.record(build_event(
            event_id=sender.new_event_id(),
            timestamp=exchange.timestamp,
            method=environ.get("REQUEST_METHOD", "GET"),
            path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "/"),
            endpoint=environ.get(ENDPOINT_KEY),
            status_code=exchange.status or 500,
            latency_ms=latency_ms,
            request_bytes=request_bytes,
            response_bytes=exchange.response_bytes,
            api_key=consumer_id(raw_consumer, opts),
            ip=ip,
            user_agent=environ.get("HTTP_USER_AGENT") if opts.capture_user_agent else None,
            country=(environ.get(self._country_key) or "").upper() if self._country_key
            else None,
            function=environ.get(FUNCTION_KEY),
        ))


def instrument_flask(
    app: Any, sender: Sender | None = None, options: CaptureOptions | None = None
) -> TurnstileWSGI:
    """Wrap a Flask app: the middleware around ``app.wsgi_app`` plus the url_rule hook."""
    from flask import request

    def remember_rule() -> None:
        rule = request.url_rule
        if rule is not None:
            prefix = request.environ.get("SCRIPT_NAME", "")
            request.environ[ENDPOINT_KEY] = prefix + template_from_rule(rule.rule)
            request.environ[FUNCTION_KEY] = rule.endpoint

    app.before_request_funcs.setdefault(None, []).insert(0, remember_rule)
    middleware = TurnstileWSGI(app.wsgi_app, sender, options)
    app.wsgi_app = middleware
    return middleware
