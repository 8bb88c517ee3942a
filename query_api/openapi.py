"""The OpenAPI document says what the API really answers on error: problem+json.

FastAPI documents a 422 ``HTTPValidationError`` on every operation; this API answers a
400 problem+json instead (``problems``), plus 401/403 for a missing or weak key, 404 for an
absent resource, 413 for an oversized body and 503 when the database is unavailable. A
client generator, or schemathesis' conformance checks, then see the real contract.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI

from query_api.problems import PROBLEM_JSON

PROBLEM_SCHEMA: Final = {
    "type": "object",
    "description": "RFC 9457 problem details; invalid_params names each parameter at fault.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "invalid_params": {"type": "array", "items": {
            "type": "object", "required": ["name", "reason"],
            "properties": {"name": {"type": "string"}, "reason": {"type": "string"}}}},
    },
}
_REF: Final = {"$ref": "#/components/schemas/Problem"}
_DESCRIPTIONS: Final = {
    "400": "Invalid parameter or body (invalid_params names which)",
    "401": "Missing, unknown or revoked key",
    "403": "The key's kind cannot use this route",
    "404": "No such resource in this project",
    "413": "Body larger than the limit",
    "503": "Database unavailable or overloaded; retry after Retry-After seconds",
}


def _problem(code: str) -> dict[str, Any]:
    return {"description": _DESCRIPTIONS[code], "content": {PROBLEM_JSON: {"schema": _REF}}}


def error_codes(operation: dict[str, Any], path: str) -> list[str]:
    codes = ["400", "503"]
    if operation.get("security"):
        codes += ["401", "403"]
    if "{" in path:
        codes.append("404")
    if "requestBody" in operation:
        codes.append("413")
    return sorted(codes)


def with_problem_responses(document: dict[str, Any]) -> dict[str, Any]:
    """Replace the 422 validation responses with the problem responses (in place)."""
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for code in error_codes(operation, path):
                responses.setdefault(code, _problem(code))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    return document


def install_problem_openapi(app: FastAPI) -> None:
    """Generate the document once, with problem responses, when first asked for."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_problem_responses(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
