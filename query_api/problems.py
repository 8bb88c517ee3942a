"""RFC 9457 ``application/problem+json`` errors that name the parameter at fault.

Every error the API returns has this one shape, so a client (or the dashboard) can show
"granularity: must be one of 1m, 1h, 1d, auto" without parsing prose:

    {"type": "about:blank", "title": "Invalid parameter", "status": 400,
     "detail": "granularity: must be one of …", "invalid_params": [{"name": "granularity",
     "reason": "must be one of …"}]}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TITLES: Final = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
                  405: "Method not allowed", 406: "Not acceptable", 413: "Payload too large",
                  415: "Unsupported media type"}
RETRY_AFTER_S: Final = 5


def printable(text: str) -> str:
    """``text`` with U+0000 and lone surrogates escaped, so any JSON encoder can write it."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


class ProblemError(Exception):
    """An error answered as problem+json; raised by routes, params and deps alike."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        invalid_params: Sequence[tuple[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid_params = list(invalid_params)
        self.headers = headers


class InvalidParameterError(ProblemError):
    """A query, path or body parameter that cannot be served; ``name`` says which."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(400, "Invalid parameter", f"{name}: {reason}",
                         invalid_params=[(name, reason)])
        self.name = name
        self.reason = reason


def problem_body(
    status: int, title: str, detail: str, invalid_params: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": printable(detail)}
    if invalid_params:
        body["invalid_params"] = [{"name": printable(n), "reason": printable(r)}
                                  for n, r in invalid_params]
    return body


def problem_response(
    status: int,
    title: str,
    detail: str,
    invalid_params: Sequence[tuple[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(problem_body(status, title, detail, invalid_params), status_code=status,
                        media_type=PROBLEM_JSON, headers=headers)


def _param_name(loc: Sequence[Any]) -> str:
    """``("query", "window")`` → ``window``; body fields keep their dotted path."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"query", "path", "header", "cookie"}:
        parts = parts[1:]
    elif parts and parts[0] == "body":
        # ("body", 17) is a JSON syntax error at offset 17: the body as a whole is at fault
        parts = parts[1:] if len(parts) > 1 and not parts[1].isdigit() else ["body"]
    return ".".join(parts) or "request"


async def _on_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)  # noqa: S101 - registered for this type only
    return problem_response(exc.status, exc.title, exc.detail, exc.invalid_params, exc.headers)


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    params = [(_param_name(e.get("loc", ())), str(e.get("msg", "invalid"))) for e in exc.errors()]
    detail = "; ".join(f"{n}: {r}" for n, r in params)
    return problem_response(400, "Invalid parameter", detail, params)


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    title = _TITLES.get(exc.status_code, "Error")
    detail = str(exc.detail)
    params = [("body", detail)] if exc.status_code == 400 and "body" in detail else []
    return problem_response(exc.status_code, title, detail, params,
                            headers=dict(exc.headers or {}))


async def _on_database_gone(_request: Request, exc: Exception) -> JSONResponse:
    """PostgreSQL unreachable, the pool exhausted or a statement timed out: retry later."""
    log.warning("query API: database unavailable (%s: %s)", type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    return problem_response(503, "Service unavailable",
                            "the database is unavailable or overloaded; retry shortly",
                            headers={"Retry-After": str(RETRY_AFTER_S)})


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback by Starlette; the client gets no internals."""
    return problem_response(500, "Internal error", "the query API failed on this request")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for gone in (psycopg.OperationalError, psycopg.errors.QueryCanceled, PoolTimeout):
        app.add_exception_handler(gone, _on_database_gone)
    app.add_exception_handler(Exception, _on_unexpected)
