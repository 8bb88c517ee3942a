"""Validate a batch of incoming events and turn the good ones into Kafka records.

Fast path: the whole body is decoded and type-checked by msgspec in one C call. Only when
that fails does the slow path decode event by event, so that a bad event is reported with
*every* problem it has (``"status_code: Expected `int` <= 599"``) and the good events of
the same request are still accepted. Both paths check the same annotations of
``schemas.event.IncomingEvent``; there is no second copy of the rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from schemas.endpoints import normalise_endpoint, strip_query
from schemas.event import (
    ANONYMOUS_API_KEY,
    HTTP_METHODS,
    IP_CHARS,
    MAX_USER_AGENT,
    EventRecord,
    IncomingEvent,
)

MIN_TIMESTAMP_US: Final = 946_684_800_000_000  # 2000-01-01T00:00:00Z
DEFAULT_MAX_FUTURE_US: Final = 24 * 3600 * 1_000_000

_FRIENDLY_PATTERN_ERRORS: Final = {
    "country": "must be an ISO 3166-1 alpha-2 code such as 'DE'",
    "method": "must be an HTTP method such as 'GET'",
    "ip": "must be an IPv4/IPv6 address (or its truncated or hashed form)",
}
_MSGSPEC_PATH = re.compile(r" - at `\$[^`]*`$")


class BodyError(ValueError):
    """The request body as a whole cannot be read as a batch of events (→ HTTP 400)."""


class _Envelope(msgspec.Struct):
    events: list[IncomingEvent]


class _RawEnvelope(msgspec.Struct):
    events: list[msgspec.Raw]


_FAST_DECODER: Final = msgspec.json.Decoder(list[IncomingEvent] | _Envelope)
_RAW_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw] | _RawEnvelope)
_ONE_DECODER: Final = msgspec.json.Decoder(IncomingEvent)
_FIELDS: Final = msgspec.structs.fields(IncomingEvent)


@dataclass(frozen=True, slots=True)
class Rejection:
    """One refused event: its position in the request and every reason, ``field: reason``."""

    index: int
    errors: list[str]


@dataclass(slots=True)
class ValidatedBatch:
    """Accepted records (with their request positions) and rejections, in request order."""

    records: list[EventRecord] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.records) + len(self.rejected)


def _clean(message: str) -> str:
    return _MSGSPEC_PATH.sub("", message)


def _ip_error(ip: str) -> str | None:
    # strip() leaves something only when a character outside IP_CHARS is present.
    return f"ip: {_FRIENDLY_PATTERN_ERRORS['ip']}" if ip.strip(IP_CHARS) else None


def _field_errors(raw: msgspec.Raw) -> list[str]:
    """Every problem of one event that failed to decode, one ``field: reason`` per field."""
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return [f"event: {_clean(str(exc))}"]
    if not isinstance(obj, dict):
        return [f"event: expected a JSON object, got {type(obj).__name__}"]
    errors: list[str] = []
    for f in _FIELDS:
        if f.encode_name not in obj:
            if f.required:
                errors.append(f"{f.name}: required")
            continue
        value: Any = obj[f.encode_name]
        if value is None and not f.required:
            continue
        try:
            msgspec.convert(value, f.type)
        except msgspec.ValidationError as exc:
            msg = _clean(str(exc))
            if "regex" in msg and f.name in _FRIENDLY_PATTERN_ERRORS:
                msg = _FRIENDLY_PATTERN_ERRORS[f.name]
            errors.append(f"{f.name}: {msg}")
            continue
        if f.name == "ip" and isinstance(value, str) and (ip_error := _ip_error(value)):
            errors.append(ip_error)
    return errors or ["event: invalid"]


def _timestamp_us(ts: float | datetime) -> int | str:
    """µs since the epoch, or the reason it is unusable."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            return "RFC 3339 timestamps need a UTC offset ('Z' or '+hh:mm')"
        delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return round(ts * 1_000_000)


def _to_record(
    ev: IncomingEvent, project_id: str, received_at_us: int, max_timestamp_us: int
) -> EventRecord | list[str]:
    """The record of a valid event, or the list of its errors.

    Most events are already in canonical form (Unix-seconds timestamp in range, upper-case
    method, plain path, ``latency_ms``, clean IP): they take the first branch, which only
    checks that. Anything else goes through ``_normalise``, which applies every rule.
    """
    ts = ev.timestamp
    path = ev.path
    ip = ev.ip
    if (
        type(ts) is float
        and MIN_TIMESTAMP_US <= (ts_us := round(ts * 1_000_000)) <= max_timestamp_us
        and ev.method in HTTP_METHODS
        and path[0] == "/"
        and "?" not in path
        and "#" not in path
        and "://" not in path
        and ev.latency_ms is not None
        and (not ip or not ip.strip(IP_CHARS))
    ):
        return _build(ev, project_id, received_at_us, ts_us, ev.method, path, ev.latency_ms)
    return _normalise(ev, project_id, received_at_us, max_timestamp_us)


def _normalise(
    ev: IncomingEvent, project_id: str, received_at_us: int, max_timestamp_us: int
) -> EventRecord | list[str]:
    """Apply the rules types cannot express; return the record or the list of errors."""
    errors: list[str] = []
    ts = _timestamp_us(ev.timestamp)
    if isinstance(ts, str):
        errors.append(f"timestamp: {ts}")
    elif ts < MIN_TIMESTAMP_US:
        errors.append("timestamp: before 2000-01-01 (Unix seconds expected, not ms?)")
    elif ts > max_timestamp_us:
        errors.append("timestamp: too far in the future (Unix seconds expected, not ms?)")
    method = ev.method
    if method not in HTTP_METHODS:
        method = method.upper()
    if method not in HTTP_METHODS:
        errors.append(f"method: {_FRIENDLY_PATTERN_ERRORS['method']}")
    path = ev.path
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    if "?" in path or "#" in path:
        path = strip_query(path)
    if path[0] != "/":
        errors.append("path: must start with '/'")
    if ev.latency_ms is not None:
        latency = ev.latency_ms
    elif ev.response_us is not None:
        latency = ev.response_us / 1000.0
    else:
        errors.append("latency_ms: required (or response_us)")
        latency = 0.0
    if ev.ip and (ip_error := _ip_error(ev.ip)):
        errors.append(ip_error)
    if errors:
        return errors
    assert isinstance(ts, int)  # noqa: S101 - narrowed by the checks above
    return _build(ev, project_id, received_at_us, ts, method, path, latency)


def _build(
    ev: IncomingEvent,
    project_id: str,
    received_at_us: int,
    timestamp_us: int,
    method: str,
    path: str,
    latency_ms: float,
) -> EventRecord:
    ua = ev.user_agent
    country = ev.country
    # At most 15 keyword arguments: msgspec's constructor has a fast path up to that many
    # and is 7x slower past it; the two rarely used fields are set afterwards.
    record = EventRecord(
        event_id=ev.event_id,
        project_id=project_id,
        timestamp_us=timestamp_us,
        received_at_us=received_at_us,
        method=method,
        path=path,
        endpoint=ev.endpoint or normalise_endpoint(path),
        status_code=ev.status_code,
        latency_ms=latency_ms,
        request_bytes=ev.request_bytes,
        response_bytes=ev.response_bytes,
        api_key=ev.api_key or ev.consumer_id or ev.customer_id or ANONYMOUS_API_KEY,
        ip=ev.ip or None,
        user_agent=(ua if len(ua) <= MAX_USER_AGENT else ua[:MAX_USER_AGENT]) if ua else None,
        country=country.upper() if country else None,
    )
    if ev.function:
        record.function = ev.function
    if ev.tags:
        record.tags = ev.tags
    return record


def decode_incoming(body: bytes) -> tuple[list[IncomingEvent | list[str]], int]:
    """Decode a body (JSON array or ``{"events": [...]}``) into events or their errors.

    Returns the per-position results and the number of events. Raises ``BodyError`` when
    the body is not JSON or not one of the two accepted shapes.
    """
    try:
        decoded = _FAST_DECODER.decode(body)
        events = decoded.events if isinstance(decoded, _Envelope) else decoded
        return list(events), len(events)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        raise BodyError(f"body: {_clean(str(exc))}") from exc
    try:
        raw = _RAW_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise BodyError(
            "body: expected a JSON array of events or an object {\"events\": [...]}"
        ) from exc
    items = raw.events if isinstance(raw, _RawEnvelope) else raw
    out: list[IncomingEvent | list[str]] = []
    for item in items:
        try:
            out.append(_ONE_DECODER.decode(item))
        except msgspec.DecodeError:
            out.append(_field_errors(item))
    return out, len(items)


def validate_batch(
    body: bytes,
    *,
    project_id: str,
    received_at_us: int,
    max_future_us: int = DEFAULT_MAX_FUTURE_US,
    batch_id: str = "",
) -> ValidatedBatch:
    """Validate a request body; good events become records, bad ones rejections."""
    decoded, _ = decode_incoming(body)
    return validate_events(
        decoded, project_id=project_id, received_at_us=received_at_us,
        max_future_us=max_future_us, batch_id=batch_id,
    )


def validate_events(
    decoded: list[IncomingEvent | list[str]],
    *,
    project_id: str,
    received_at_us: int,
    max_future_us: int = DEFAULT_MAX_FUTURE_US,
    batch_id: str = "",
) -> ValidatedBatch:
    """Second half of ``validate_batch``, for callers that check the count in between.

    ``batch_id`` (the HTTP batch's id) is stamped on every record, with the event's
    position in the request as ``batch_index``.
    """
    batch = ValidatedBatch()
    add_record = batch.records.append
    add_index = batch.indices.append
    max_timestamp_us = received_at_us + max_future_us
    for i, item in enumerate(decoded):
        result = (
            item
            if isinstance(item, list)
            else _to_record(item, project_id, received_at_us, max_timestamp_us)
        )
        if isinstance(result, list):
            batch.rejected.append(Rejection(index=i, errors=result))
        else:
            if batch_id:
                result.batch_id = batch_id
                result.batch_index = i
            add_record(result)
            add_index(i)
    return batch
