"""Validate a batch of incoming events and turn the good ones into Kafka records.

Fast path: the whole body is decoded and type-checked by msgspec in one C call. Only when
that fails does the slow path decode event by event, so that a bad event is reported with
*every* problem it has (``"status_code: Expected `int` <= 599"``) and the good events of
the same request are still accepted. Both paths check the same annotations of
``schemas.event.IncomingEvent``; there is no second copy of the rules.

Every value an accepted record stores also passes ``schemas.storable`` (no U+0000, no lone
surrogate, finite numbers), so nothing accepted can fail a PostgreSQL COPY, a Parquet
write or a Kafka tool downstream. A body without a backslash cannot hold either (see
``DecodedBody``), so its texts are not checked one by one; otherwise, on the fast path, a
plain ASCII string costs one ``isascii()`` and one ``in``, and anything else takes the slow
path, which names the field.

Nesting: an event needs four levels of JSON (envelope, array, event, tags); msgspec skips
ignored fields unread, and past its recursion limit (several hundred levels, always far
more than ``MAX_JSON_DEPTH``) it raises ``RecursionError``, answered as a ``BodyError``
naming ``MAX_JSON_DEPTH``: every body up to that depth is always read.
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
    MAX_ENDPOINT,
    MAX_USER_AGENT,
    EventRecord,
    IncomingEvent,
)
from schemas.storable import NUL, SURROGATE_PROBLEM, number_problem, text_problem

MIN_TIMESTAMP_US: Final = 946_684_800_000_000  # 2000-01-01T00:00:00Z
MIN_TIMESTAMP_S: Final = MIN_TIMESTAMP_US / 1_000_000
DEFAULT_MAX_FUTURE_US: Final = 24 * 3600 * 1_000_000
# Unix seconds beyond this overflow float64 once in µs (1e308 s x 1e6 = inf) or int64.
_TIMESTAMP_LIMIT_S: Final = 9.2e12
MAX_JSON_DEPTH: Final = 64
DEPTH_PROBLEM: Final = f"body: nested deeper than {MAX_JSON_DEPTH} levels"

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
    except RecursionError:
        return [f"event: nested deeper than {MAX_JSON_DEPTH} levels"]
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
        elif isinstance(value, str) and (problem := text_problem(value)):
            errors.append(f"{f.name}: {problem}")
        elif f.name == "tags" and isinstance(value, dict):
            errors.extend(_tag_errors(value))
    return errors or ["event: invalid"]


def _tag_errors(tags: dict[str, str]) -> list[str]:
    """``tags.<key>: <why>`` for each unstorable tag (the key is named only when it is clean)."""
    errors = []
    for key, value in tags.items():
        if problem := text_problem(key):
            errors.append(f"tags: a key {problem}")
        elif problem := text_problem(value):
            errors.append(f"tags.{key}: {problem}")
    return errors


def _tags_plain(tags: dict[str, str]) -> bool:
    for key, value in tags.items():
        if not (key.isascii() and value.isascii() and NUL not in key and NUL not in value):
            return False
    return True


def _text_errors(ev: IncomingEvent, path: str, user_agent: str | None) -> list[str]:
    """``field: why`` for each stored text of ``ev`` that some sink cannot store.

    ``path`` and ``user_agent`` are the values as stored (query string stripped,
    truncated); ``method``, ``ip`` and ``country`` are checked by their own rules.
    """
    errors = []
    key_field = ("api_key" if ev.api_key else "consumer_id" if ev.consumer_id
                 else "customer_id")
    for name, value in (
        ("event_id", ev.event_id),
        ("path", path),
        ("endpoint", ev.endpoint),
        (key_field, ev.api_key or ev.consumer_id or ev.customer_id),
        ("user_agent", user_agent),
        ("function", ev.function),
    ):
        if value and (problem := text_problem(value)):
            errors.append(f"{name}: {problem}")
    if ev.tags:
        errors.extend(_tag_errors(ev.tags))
    return errors


def _timestamp_us(ts: float | datetime) -> int | str:
    """µs since the epoch, or the reason it is unusable."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            return "RFC 3339 timestamps need a UTC offset ('Z' or '+hh:mm')"
        delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if problem := number_problem(ts):
        return problem
    # Clamped so that 1e308 s stays a (rejected) integer instead of overflowing to inf.
    return round(max(-_TIMESTAMP_LIMIT_S, min(ts, _TIMESTAMP_LIMIT_S)) * 1_000_000)


def _texts_plain(ev: IncomingEvent) -> bool:
    """Every stored text of ``ev`` is ASCII without U+0000: one ``isascii`` and one ``in`` each."""
    eid, path, ep, ua, fn = ev.event_id, ev.path, ev.endpoint, ev.user_agent, ev.function
    key = ev.api_key or ev.consumer_id or ev.customer_id
    return (
        eid.isascii() and NUL not in eid
        and path.isascii() and NUL not in path
        and (ep is None or (ep.isascii() and NUL not in ep))
        and (ua is None or (ua.isascii() and NUL not in ua))
        and (key is None or (key.isascii() and NUL not in key))
        and (fn is None or (fn.isascii() and NUL not in fn))
        and (ev.tags is None or _tags_plain(ev.tags))
    )


def _to_record(
    ev: IncomingEvent,
    project_id: str,
    received_at_us: int,
    max_timestamp_us: int,
    max_timestamp_s: float,
    check_text: bool,
) -> EventRecord | list[str]:
    """The record of a valid event, or the list of its errors.

    Most events are already in canonical form (Unix-seconds timestamp in range, upper-case
    method, plain path, ``latency_ms``, clean IP, plain text): they take the first branch,
    which only checks that. Anything else goes through ``_normalise``, which applies every
    rule and names each field at fault.
    """
    ts = ev.timestamp
    path = ev.path
    ip = ev.ip
    if (
        type(ts) is float
        and MIN_TIMESTAMP_S <= ts <= max_timestamp_s
        and ev.method in HTTP_METHODS
        and path[0] == "/"
        and "?" not in path
        and "#" not in path
        and "://" not in path
        and ev.latency_ms is not None
        and (not ip or not ip.strip(IP_CHARS))
        and (ev.country is None or len(ev.country) == 2)
        and (not check_text or _texts_plain(ev))
    ):
        ts_us = round(ts * 1_000_000)
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
        latency = ev.latency_ms  # bounded by its type: NaN and inf fail ``ge``/``le``
    elif ev.response_us is not None:
        latency = ev.response_us / 1000.0
    else:
        errors.append("latency_ms: required (or response_us)")
        latency = 0.0
    if ev.ip and (ip_error := _ip_error(ev.ip)):
        errors.append(ip_error)
    if ev.country is not None and len(ev.country) != 2:  # the pattern's ``$`` allows "DE\n"
        errors.append(f"country: {_FRIENDLY_PATTERN_ERRORS['country']}")
    ua = ev.user_agent
    errors.extend(_text_errors(ev, path, ua[:MAX_USER_AGENT] if ua else None))
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
        endpoint=ev.endpoint or normalise_endpoint(path)[:MAX_ENDPOINT],
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


@dataclass(frozen=True, slots=True)
class DecodedBody:
    """Per-position events (or their errors) of one body, and whether texts need checking.

    ``check_text`` is False when the body holds no backslash at all: msgspec refuses raw
    control characters, invalid UTF-8 and lone surrogates, so without a JSON escape no
    decoded string can hold U+0000 or a surrogate, and the per-field text checks are
    skipped (one ``memchr`` over the body instead of two C calls per string).
    """

    items: list[IncomingEvent | list[str]]
    count: int
    check_text: bool = True


# A JSON escape of a lone surrogate makes msgspec refuse the whole body. So that only the
# events holding one are refused (the rest of the batch is kept), each lone escape is
# replaced by the escaped pair of U+10FFFF (a noncharacter, never sent as text) and the
# events whose texts then hold it are rejected naming the field. Escaped backslashes and
# valid pairs are matched first, so they are left alone.
_SURROGATE_ESCAPES: Final = re.compile(
    rb"(\\\\)|(\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_MARK: Final = "\U0010ffff"
_MARK_ESCAPE: Final = rb"\udbff\udfff"


def _mark_lone_surrogates(body: bytes) -> bytes:
    return _SURROGATE_ESCAPES.sub(
        lambda m: m.group(0) if m.group(1) or m.group(2) else _MARK_ESCAPE, body)


def _marked_fields(ev: IncomingEvent) -> list[str]:
    errors = [f"{f.name}: {SURROGATE_PROBLEM}" for f in _FIELDS
              if isinstance(value := getattr(ev, f.name), str) and _MARK in value]
    for key, value in (ev.tags or {}).items():
        if _MARK in key or _MARK in value:
            errors.append(f"tags.{key.replace(_MARK, '?')}: {SURROGATE_PROBLEM}")
    return errors


def _decode_marked(body: bytes) -> DecodedBody:
    """The slow path over a body whose lone surrogates were marked; marked events refused."""
    decoded = _decode_items(body)
    items: list[IncomingEvent | list[str]] = [
        item if isinstance(item, list) else (_marked_fields(item) or item)
        for item in decoded.items]
    return DecodedBody(items, decoded.count, True)


def decode_incoming(body: bytes) -> DecodedBody:
    """Decode a body (JSON array or ``{"events": [...]}``) into events or their errors.

    Raises ``BodyError`` when the body is not JSON, not one of the two accepted shapes, or
    nested too deeply for the decoder.
    """
    check_text = b"\\" in body
    try:
        decoded = _FAST_DECODER.decode(body)
        events = decoded.events if isinstance(decoded, _Envelope) else decoded
        return DecodedBody(list(events), len(events), check_text)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        repaired = _mark_lone_surrogates(body) if check_text else body
        if repaired == body:
            raise BodyError(f"body: {_clean(str(exc))}") from exc
        return _decode_marked(repaired)
    except RecursionError:
        raise BodyError(DEPTH_PROBLEM) from None
    return _decode_items(body)


def _decode_items(body: bytes) -> DecodedBody:
    """Decode event by event, so each bad event gets its own errors."""
    check_text = b"\\" in body
    try:
        raw = _RAW_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise BodyError(
            "body: expected a JSON array of events or an object {\"events\": [...]}"
        ) from exc
    except RecursionError:
        raise BodyError(DEPTH_PROBLEM) from None
    items = raw.events if isinstance(raw, _RawEnvelope) else raw
    out: list[IncomingEvent | list[str]] = []
    for item in items:
        try:
            out.append(_ONE_DECODER.decode(item))
        except msgspec.DecodeError:
            out.append(_field_errors(item))
        except RecursionError:
            out.append([f"event: nested deeper than {MAX_JSON_DEPTH} levels"])
    return DecodedBody(out, len(items), check_text)


def validate_batch(
    body: bytes,
    *,
    project_id: str,
    received_at_us: int,
    max_future_us: int = DEFAULT_MAX_FUTURE_US,
    batch_id: str = "",
) -> ValidatedBatch:
    """Validate a request body; good events become records, bad ones rejections."""
    decoded = decode_incoming(body)
    return validate_events(
        decoded.items, project_id=project_id, received_at_us=received_at_us,
        max_future_us=max_future_us, batch_id=batch_id, check_text=decoded.check_text,
    )


def validate_events(
    decoded: list[IncomingEvent | list[str]],
    *,
    project_id: str,
    received_at_us: int,
    max_future_us: int = DEFAULT_MAX_FUTURE_US,
    batch_id: str = "",
    check_text: bool = True,
) -> ValidatedBatch:
    """Second half of ``validate_batch``, for callers that check the count in between.

    ``batch_id`` (the HTTP batch's id) is stamped on every record, with the event's
    position in the request as ``batch_index``. ``check_text=False`` (only with
    ``DecodedBody.check_text``) skips the fast path's text checks.
    """
    batch = ValidatedBatch()
    add_record = batch.records.append
    add_index = batch.indices.append
    max_timestamp_us = received_at_us + max_future_us
    max_timestamp_s = max_timestamp_us / 1_000_000
    for i, item in enumerate(decoded):
        result = (
            item
            if isinstance(item, list)
            else _to_record(item, project_id, received_at_us, max_timestamp_us,
                            max_timestamp_s, check_text)
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
