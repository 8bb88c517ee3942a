"""The gateway's OpenAPI document (``/openapi.json``), generated from the msgspec types.

The batch route reads its body as bytes (msgspec decodes it in one C call; a pydantic body
model would cost several times the whole validation), so FastAPI cannot see a request
model. Its request body, every answer and the problem+json shape are described here
instead, from the same ``schemas.event.IncomingEvent`` the decoder uses, so the document
cannot drift from what the gateway accepts.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from schemas.event import IncomingEvent
from schemas.ingest_wire import BATCH_ID_HEADER, BATCH_ID_PATTERN

_REF: Final = "#/components/schemas/{name}"


class EventsEnvelope(msgspec.Struct):
    """The batch as an object: ``{"events": [...]}``."""

    events: list[IncomingEvent]


class EventRejection(msgspec.Struct):
    """One refused event: its position in the request and every reason, ``field: reason``."""

    index: int
    errors: list[str]


class BatchAccepted(msgspec.Struct):
    """202: Kafka holds every accepted event; ``rejected`` lists the refused ones."""

    accepted: int
    rejected: list[EventRejection]


class InvalidParam(msgspec.Struct):
    """The part of the request at fault (``body``, ``X-Api-Key``, ``events[3].path``)."""

    name: str
    reason: str


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details, the shape of every 4xx and 5xx answer."""

    type: str
    title: str
    status: int
    detail: str
    invalid_params: list[InvalidParam] | None = None


class BatchRefused(msgspec.Struct, omit_defaults=True):
    """400 when no event of the batch is valid: a problem, plus the 202's fields."""

    type: str
    title: str
    status: int
    detail: str
    accepted: int
    rejected: list[EventRejection]
    invalid_params: list[InvalidParam] | None = None


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    """``ok`` or ``unreachable`` for each dependency."""

    kafka: str
    postgres: str


_TYPES: Final = (
    list[IncomingEvent] | EventsEnvelope, BatchAccepted, Problem, BatchRefused, Health,
    Readiness,
)
(_BODY_SCHEMA, *_), COMPONENTS = msgspec.json.schema_components(_TYPES, ref_template=_REF)
# What the annotations cannot say: the timestamp's range is checked against the clock.
COMPONENTS["IncomingEvent"]["properties"]["timestamp"]["description"] = (
    "Request start: Unix seconds, or RFC 3339 with an offset; from 2000-01-01 to 24 h "
    "after the gateway's clock."
)
COMPONENTS["IncomingEvent"]["properties"]["timestamp"]["anyOf"][0]["minimum"] = 946_684_800
EXAMPLE_BATCH: Final = [{
    "event_id": "01J9Z7Q4W8N2", "timestamp": 1_767_225_600.25, "method": "GET",
    "path": "/v1/users/42", "endpoint": "/v1/users/{id}", "status_code": 200,
    "latency_ms": 12.5, "request_bytes": 0, "response_bytes": 512, "api_key": "cust_0042",
    "ip": "203.0.113.9", "user_agent": "okhttp/4.12.0",
}]


def _json(name: str, media: str = "application/json") -> dict[str, Any]:
    return {"content": {media: {"schema": {"$ref": _REF.format(name=name)}}}}


def problem(description: str, **headers: str) -> dict[str, Any]:
    answer = {"description": description, **_json("Problem", "application/problem+json")}
    if headers:
        answer["headers"] = {h: {"description": d, "schema": {"type": "string"}}
                             for h, d in headers.items()}
    return answer


BATCH_ROUTE_DOCS: Final[dict[str, Any]] = {
    "status_code": 202,
    "summary": "Ingest a batch of events",
    "description": "Validates every event (a refused one does not stop the others), "
                   "enriches and publishes them; 202 only once Kafka holds every accepted "
                   "event. Limits: body bytes (raw and decompressed), events per request, "
                   "the key's rate.",
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "description": "A JSON array of events, or an object {\"events\": [...]}; "
                           "gzip (Content-Encoding) accepted.",
            "content": {"application/json": {"schema": _BODY_SCHEMA,
                                             "example": EXAMPLE_BATCH}},
        },
        "security": [{"apiKey": []}, {"bearer": []}],
        "parameters": [{
            "name": BATCH_ID_HEADER, "in": "header", "required": False,
            "description": "The agent's id of this batch, the same on every retry.",
            "schema": {"type": "string", "pattern": BATCH_ID_PATTERN},
        }],
    },
    "responses": {
        202: {"description": "Durable in Kafka: every accepted event; refused ones listed.",
              **_json("BatchAccepted")},
        400: {"description": "Unreadable body, bad header, or no valid event in the batch.",
              "content": {"application/problem+json": {"schema": {"anyOf": [
                  {"$ref": _REF.format(name="Problem")},
                  {"$ref": _REF.format(name="BatchRefused")}]}}}},
        401: problem("Missing, unknown or revoked key.",
                     **{"WWW-Authenticate": "The scheme to use: Bearer."}),
        403: problem("The key may not write events (a read or admin key).",
                     **{"WWW-Authenticate": "The scheme to use: Bearer."}),
        413: problem("Body over the byte limit (raw or decompressed) or too many events."),
        415: problem("Content-Type is not JSON, or Content-Encoding not gzip."),
        429: problem("The key's ingest rate limit is exceeded.",
                     **{"Retry-After": "Seconds to wait."}),
        503: problem("Kafka or the key store is unavailable; retry with the same batch.",
                     **{"Retry-After": "Seconds to wait."}),
    },
}
HEALTH_DOCS: Final[dict[str, Any]] = {
    "summary": "Liveness", "responses": {200: {"description": "Up.", **_json("Health")}},
}
READY_DOCS: Final[dict[str, Any]] = {
    "summary": "Readiness: Kafka and PostgreSQL reachable",
    "responses": {200: {"description": "Ready.", **_json("Readiness")},
                  503: {"description": "A dependency is unreachable.", **_json("Readiness")}},
}
METRICS_DOCS: Final[dict[str, Any]] = {
    "summary": "Prometheus metrics",
    "responses": {200: {"description": "Prometheus text exposition.",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}},
}
_SECURITY_SCHEMES: Final = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    "bearer": {"type": "http", "scheme": "bearer"},
}


def install_openapi(app: FastAPI) -> None:
    """Serve the document with the msgspec-derived components (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            components = doc.setdefault("components", {})
            components.setdefault("schemas", {}).update(COMPONENTS)
            components["securitySchemes"] = _SECURITY_SCHEMES
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
