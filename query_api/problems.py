"""RFC 9457 ``application/problem+json`` errors that name the parameter at fault.

Every error the API returns has this one shape, so a client (or the dashboard) can show
"granularity: must be one of 1m, 1h, 1d, auto" without parsing prose:

    {"type": "about:blank", "title": "Invalid parameter", "status": 400,
     "detail": "granularity: must be one of …", "invalid_params": [{"name": "granularity",
     "reason": "must be one of …"}]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


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
                            "detail": detail}
    if invalid_params:
        body["invalid_params"] = [{"name": n, "reason": r} for n, r in invalid_params]
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
    if parts and parts[0] in {"query", "path", "header", "cookie", "body"}:
        parts = parts[1:]
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
    title = {401: "Unauthorized", 403: "Forbidden", 404: "Not found",
             405: "Method not allowed"}.get(exc.status_code, "Error")
    return problem_response(exc.status_code, title, str(exc.detail),
                            headers=dict(exc.headers or {}))


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
