"""HTTP routes: the batch ingestion endpoint, health, readiness and metrics.

The ingestion handler runs the checks cheapest-first (key, headers, size, shape, count,
rate limit) so a bad request costs little, validates with ``schemas.validation``, enriches,
and answers 202 only after ``EventPublisher.publish`` saw Kafka acknowledge every record.
Every refusal is problem+json (``problems``) naming the part at fault; the OpenAPI
description of each route lives in ``openapi``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ingest_gateway import metrics
from ingest_gateway.auth import Authenticator, DatabaseUnavailable, Denial, secret_from_headers
from ingest_gateway.body import (
    BodyProblem,
    check_content_type,
    check_declared_length,
    decode_body,
    encoding_of,
)
from ingest_gateway.body_reader import BodyReader, ClientGone
from ingest_gateway.enrich import Enricher, country_from_header
from ingest_gateway.openapi import BATCH_ROUTE_DOCS, HEALTH_DOCS, METRICS_DOCS, READY_DOCS
from ingest_gateway.problems import (
    MAX_INVALID_PARAMS,
    problem_response,
    split_reason,
)
from ingest_gateway.producer import EventPublisher, Unavailable
from ingest_gateway.ratelimit import TokenBuckets, retry_after_header
from ingest_gateway.settings import GatewaySettings
from schemas.ingest_wire import (
    ACCEPTED_FIELD,
    BATCH_ID_HEADER,
    BATCH_ID_PROBLEM,
    BATCH_ID_RE,
    INGEST_BATCH_PATH,
    REJECTED_FIELD,
)
from schemas.ops import render_metrics
from schemas.records import KeyPartitioner, encode_event_records
from schemas.validation import BodyError, Rejection, decode_incoming, validate_events

BATCH_ID_REQUEST_HEADER: Final = BATCH_ID_HEADER.lower()
# gzip can make incompressible input slightly larger; allow that much over the cap on the wire.
_WIRE_SLACK_BYTES: Final = 64 * 1024

router = APIRouter()


@dataclass(slots=True)
class GatewayState:
    """Per-worker objects, created in the app's lifespan (after the worker process started)."""

    settings: GatewaySettings
    publisher: EventPublisher
    auth: Authenticator
    buckets: TokenBuckets
    enricher: Enricher
    database_ready: Any  # Callable[[], bool], blocking
    # Key → partition as Kafka's default partitioner, for the topic's real partition count.
    partitioner: KeyPartitioner


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, media_type="application/json",
        headers=headers,
    )


def _refuse(status: int, reason: str, message: str, param: str | None = None,
            **headers: str) -> Response:
    """A problem+json refusal, counted by ``reason``; ``param`` names the bad part."""
    metrics.REQUESTS_REJECTED.labels(reason).inc()
    name, why = (param, message) if param else split_reason(message, "request")
    return problem_response(status, message, [(name, why)],
                            {k.replace("_", "-"): v for k, v in headers.items()})


def _unavailable(cause: str, message: str, retry_after_s: int) -> Response:
    metrics.UNAVAILABLE.labels(cause).inc()
    return problem_response(503, message, headers={"Retry-After": str(retry_after_s)})


def _rejections(rejected: list[Rejection]) -> list[tuple[str, str]]:
    """``events[3].path: contains U+0000 …`` for each reason of each refused event."""
    params = []
    for rejection in rejected:
        for error in rejection.errors:
            name, why = split_reason(error, "event")
            params.append((f"events[{rejection.index}].{name}", why))
            if len(params) >= MAX_INVALID_PARAMS:
                return params
    return params


_DENIALS: Final = {
    Denial.MISSING: (401, "missing key: send the write key in X-Api-Key or Authorization: Bearer"),
    Denial.UNKNOWN: (401, "unknown or revoked key"),
    Denial.NOT_WRITE: (403, "this key cannot write events: use a write key"),
}


@router.post(INGEST_BATCH_PATH, **BATCH_ROUTE_DOCS)
async def ingest_batch(request: Request) -> Response:
    """Validate, enrich and publish a batch; 202 only once Kafka holds every accepted event.

    An answer given before the body was read to its end (a refusal) first discards the
    rest of the body, so that the client, still sending, can read it (``body_reader``).
    """
    state: GatewayState = request.app.state.gateway
    reader = BodyReader(request.receive)
    try:
        response = await _ingest(request, state, reader)
    except ClientGone:
        metrics.REQUESTS_REJECTED.labels("client_gone").inc()
        return problem_response(400, "the client disconnected before sending its whole body")
    if not reader.complete:
        cfg = state.settings
        if not await reader.discard(cfg.discard_body_bytes, cfg.discard_timeout_s):
            response.headers["Connection"] = "close"
    return response


async def _ingest(request: Request, state: GatewayState, reader: BodyReader) -> Response:
    cfg = state.settings
    h = request.headers
    try:
        key = await state.auth.authenticate(
            secret_from_headers(h.get("x-api-key"), h.get("authorization"))
        )
    except DatabaseUnavailable:
        return _unavailable("database", "key store unreachable, retry later", cfg.retry_after_s)
    if isinstance(key, Denial):
        status, message = _DENIALS[key]
        return _refuse(status, key.value, message, "X-Api-Key", WWW_Authenticate="Bearer")

    batch_id = h.get(BATCH_ID_REQUEST_HEADER) or uuid.uuid4().hex
    if not BATCH_ID_RE.match(batch_id):
        return _refuse(400, "bad_batch_id", BATCH_ID_PROBLEM)
    try:
        check_content_type(h.get("content-type"))
        encoding = encoding_of(h.get("content-encoding"))
        wire_cap = cfg.max_body_bytes + (_WIRE_SLACK_BYTES if encoding == "gzip" else 0)
        check_declared_length(h.get("content-length"), wire_cap)
        body = decode_body(await reader.read(wire_cap), encoding, cfg.max_body_bytes)
        decoded = decode_incoming(body)
    except BodyProblem as problem:
        reason = {413: "too_large", 415: "unsupported_media"}.get(problem.status, "bad_body")
        return _refuse(problem.status, reason, problem.message, problem.param)
    except BodyError as exc:
        return _refuse(400, "bad_body", str(exc))
    count = decoded.count
    if count > cfg.max_events:
        return _refuse(
            413, "too_many_events",
            f"body: {count} events in one request; the limit is {cfg.max_events}",
        )
    if count == 0:
        return _refuse(400, "empty", "body: the batch holds no events")
    wait_s = state.buckets.take(key.key_id, count, time.monotonic())
    if wait_s > 0:
        return _refuse(
            429, "rate_limited", "ingest rate limit of this key exceeded", "X-Api-Key",
            Retry_After=retry_after_header(wait_s),
        )

    batch = validate_events(decoded.items, project_id=key.project_id,
                            received_at_us=time.time_ns() // 1000, batch_id=batch_id,
                            check_text=decoded.check_text)
    rejected = batch.rejected
    if rejected:
        metrics.EVENTS_REJECTED.labels("invalid").inc(len(rejected))
    records = batch.records
    if not records:
        metrics.REQUESTS_REJECTED.labels("no_valid_event").inc()
        return problem_response(400, "no valid event in the batch", _rejections(rejected),
                                accepted=0, rejected=rejected)
    header_country = (
        country_from_header(h.get(cfg.country_header)) if cfg.country_header else None
    )
    state.enricher.enrich(
        records, project_id=key.project_id, privacy=key.ip_privacy, header_country=header_country
    )
    started = time.perf_counter()
    v2_records = encode_event_records(records, batch_id=batch_id, partitioner=state.partitioner)
    try:
        await state.publisher.publish(v2_records)
    except Unavailable as exc:
        return _unavailable(exc.cause, exc.detail, cfg.retry_after_s)
    metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
    metrics.EVENTS_ACCEPTED.inc(len(records))
    return _json(202, {ACCEPTED_FIELD: len(records), REJECTED_FIELD: rejected})


@router.get("/healthz", **HEALTH_DOCS)
async def healthz() -> Response:
    """The process is up (liveness)."""
    return _json(200, {"status": "ok"})


@router.get("/readyz", **READY_DOCS)
async def readyz(request: Request) -> Response:
    """Kafka and PostgreSQL both answer (readiness); 503 names what is missing."""
    state: GatewayState = request.app.state.gateway
    expected = state.settings.kafka.events_partitions
    kafka_ok, db_ok = await asyncio.gather(
        asyncio.to_thread(state.publisher.reachable, expected, 2.0),
        asyncio.to_thread(state.database_ready),
    )
    kafka_ok = kafka_ok and state.partitioner.partitions == expected
    body = {"kafka": "ok" if kafka_ok else "unreachable",
            "postgres": "ok" if db_ok else "unreachable"}
    return _json(200 if kafka_ok and db_ok else 503, body)


@router.get("/metrics", **METRICS_DOCS)
async def prometheus_metrics() -> Response:
    """Prometheus exposition (all workers' samples in multiprocess mode)."""
    payload, content_type = render_metrics()
    return Response(payload, media_type=content_type)
