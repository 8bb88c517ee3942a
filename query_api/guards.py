"""Hostile input stops at the door: parameters and bodies no handler should ever see.

- every query and path parameter (``guard_parameters``, an app-wide dependency, so every
  route gets it without repeating it) must be storable text (``schemas.storable``: no
  U+0000, no lone surrogates) and at most ``MAX_PARAM_CHARS`` long, else a 400 naming it:
  PostgreSQL refuses NUL in a bound parameter and a lone surrogate cannot even be encoded,
  both of which used to surface as a 500;
- a request body (``BodyLimitMiddleware``) is at most ``MAX_BODY_BYTES``: a larger one gets
  a 413 problem+json after the body was read and discarded up to ``DISCARD_BYTES`` (answering
  while the client still sends makes its TCP stack see a reset, not our answer), and a JSON
  body nested deeper than ``MAX_JSON_DEPTH`` gets a 400 naming the limit before any decoder
  recurses into it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Final

from fastapi import Request
from pydantic import AfterValidator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from query_api.problems import InvalidParameterError, printable, problem_response
from schemas.storable import text_problem

MAX_PARAM_CHARS: Final = 2048
MAX_QUERY_ITEMS: Final = 256
MAX_BODY_BYTES: Final = 64 * 1024
DISCARD_BYTES: Final = 8 * 1024 * 1024
MAX_JSON_DEPTH: Final = 32
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def parameter_problem(name: str, value: str) -> tuple[str, str] | None:
    """(name, reason) when a parameter cannot be served, else None. Pure."""
    problem = text_problem(name)
    if problem is not None:
        return printable(name), f"parameter name {problem}"
    problem = text_problem(value)
    if problem is not None:
        return name, problem
    if len(value) > MAX_PARAM_CHARS:
        return name, f"longer than {MAX_PARAM_CHARS} characters"
    return None


def first_problem(items: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    for name, value in items:
        found = parameter_problem(name, value)
        if found is not None:
            return found
    return None


def guard_parameters(request: Request) -> None:
    """App-wide dependency: refuse unstorable or absurd query and path parameters."""
    query = request.query_params.multi_items()
    if len(query) > MAX_QUERY_ITEMS:
        raise InvalidParameterError("query", f"more than {MAX_QUERY_ITEMS} parameters")
    found = first_problem(request.path_params.items()) or first_problem(query)
    if found is not None:
        raise InvalidParameterError(*found)


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# A str field of a request body that PostgreSQL, Parquet and JSON can all hold.
StorableText = Annotated[str, AfterValidator(_storable)]


def json_too_deep(body: bytes, limit: int) -> bool:
    """True when a JSON text nests brackets (outside strings) more than ``limit`` deep.

    Bodies are at most ``MAX_BODY_BYTES``, and the common case (fewer brackets than the
    limit in all) costs two C-level ``count`` calls.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: Scope) -> bool:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return b"json" in value.lower()
    return False


class BodyLimitMiddleware:
    """Reads a request body (bounded) before the app, then replays it; see module doc."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES,
                 discard_bytes: int = DISCARD_BYTES, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.discard_bytes = discard_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.discard_bytes:
            await self._too_large(scope, receive, send, seen=None, more=False)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send, seen=size, more=more)
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        if body and _is_json(scope) and json_too_deep(body, self.max_depth):
            reason = f"JSON nested deeper than {self.max_depth} levels"
            await problem_response(400, "Invalid body", f"body: {reason}",
                                   [("body", reason)])(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, *,
                         seen: int | None, more: bool) -> None:
        """Drain what the client still sends (bounded), then answer 413 and close.

        ``seen`` is None when the declared length alone is beyond the drain bound.
        """
        while seen is not None and more and seen <= self.discard_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        reason = f"larger than {self.max_bytes} bytes"
        response = problem_response(413, "Payload too large", f"body: {reason}",
                                    [("body", reason)], headers={"Connection": "close"})
        await response(scope, receive, send)


def _replay(body: bytes, upstream: Receive) -> Receive:
    """The buffered body as one message, then the client's own (disconnect) messages."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive
