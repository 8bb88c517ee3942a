"""RFC 9457 ``application/problem+json`` answers: every 4xx/5xx of the gateway has this shape.

    {"type": "about:blank", "title": "Payload Too Large", "status": 413,
     "detail": "body larger than the limit of 5242880 bytes",
     "invalid_params": [{"name": "body", "reason": "larger than the limit of 5242880 bytes"}]}

The same shape as the query API's (``query_api/problems.py``), so a client reads one kind of
error from both. A batch whose every event was refused (400) keeps ``accepted`` and
``rejected`` beside the problem fields, as the 202 answer has them, so an agent reads both
the same way. Framework errors (unknown route, wrong method, an unexpected exception) are
turned into the same shape by the handlers installed here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON: Final = "application/problem+json"
# A batch of 10,000 refused events still answers in a few KB of invalid_params.
MAX_INVALID_PARAMS: Final = 100

_log = logging.getLogger(__name__)


def title_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int,
    detail: str,
    invalid_params: Sequence[tuple[str, str]] = (),
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title_of(status), "status": status,
                            "detail": detail}
    if invalid_params:
        body["invalid_params"] = [
            {"name": n, "reason": r} for n, r in invalid_params[:MAX_INVALID_PARAMS]
        ]
    body.update(extra)
    return body


def problem_response(
    status: int,
    detail: str,
    invalid_params: Sequence[tuple[str, str]] = (),
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    return Response(
        orjson.dumps(problem_body(status, detail, invalid_params, **extra)),
        status_code=status, media_type=PROBLEM_JSON, headers=headers,
    )


def split_reason(message: str, default_name: str) -> tuple[str, str]:
    """``"path: must start with '/'"`` → ``("path", "must start with '/'")``."""
    name, sep, reason = message.partition(": ")
    return (name, reason) if sep and name and " " not in name else (default_name, message)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        param = ("path", f"no route {request.url.path!r}")
    elif exc.status_code == 405:
        allowed = headers.get("Allow") or headers.get("allow") or ""
        param = ("method", f"{request.method} is not allowed here; allowed: {allowed}")
    else:
        param = ("request", str(exc.detail))
    return problem_response(exc.status_code, str(exc.detail), [param], headers=headers)


async def _on_validation(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    params = [(".".join(str(p) for p in e.get("loc", ())) or "request", str(e.get("msg")))
              for e in exc.errors()]
    return problem_response(400, "; ".join(f"{n}: {r}" for n, r in params), params)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    _log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "internal error; the gateway logged it")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(Exception, _on_unexpected)
