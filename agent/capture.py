"""What every middleware captures, and how: consumer identity, client IP, the event dict.

Shared by the ASGI, WSGI and Django middleware so the three produce identical events. The
consumer (the API's customer, ``api_key`` in the event) comes from a user function or a
request header and is hashed by default with the project's consumer hash key
(``schemas.ingest_wire``), so a raw credential never leaves the host and nobody without the
key can recompute a hash from a guessed id.

``build_event`` only produces events the gateway stores: every text loses its U+0000
(``%00`` in a URL decodes to it), lone surrogates become ``?``, and each value is cut to
the limits of ``schemas.ingest_wire`` (equal to ``schemas.event``'s, tested); numbers are
clamped to their ranges and an IP that is not one is left out. A request the agent saw is
never refused downstream for what it held.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from schemas.ingest_wire import (
    CONSUMER_HASH_KEY_ENV,
    IP_CHARS,
    MAX_API_KEY,
    MAX_BYTES,
    MAX_ENDPOINT,
    MAX_EVENT_ID,
    MAX_FUNCTION,
    MAX_IP,
    MAX_LATENCY_MS,
    MAX_METHOD,
    MAX_PATH,
    MAX_USER_AGENT,
    hash_consumer_id,
)

if TYPE_CHECKING:
    from agent.settings import AgentSettings

_RULE_PARAM: Final = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
MISSING_HASH_KEY: Final = (
    f"the agent hashes consumer ids with the project's key: set {CONSUMER_HASH_KEY_ENV} "
    "(`turnstile keys hash-key --project P` prints it), or pass "
    "CaptureOptions(hash_consumer=False) to send consumer ids as they are"
)


class MissingHashKey(ValueError):
    """Consumer hashing is on but no key was given: an unkeyed hash is guessable."""


@dataclass(frozen=True)
class CaptureOptions:
    """How the middleware reads a request.

    - ``identify``: a function of the framework's request object (ASGI: the scope; WSGI: the
      environ; Django: the HttpRequest) returning the consumer id, or None.
    - ``consumer_header``: else the consumer comes from this header (e.g. ``x-api-key``).
    - ``hash_consumer``: send a keyed BLAKE2 hash instead of the value (default).
    - ``hash_key``: the project's consumer hash key; None (default) takes
      ``AgentSettings.consumer_hash_key`` (``TURNSTILE_AGENT_CONSUMER_HASH_KEY``). The
      middleware refuses to start hashing without one.
    - ``trusted_proxies``: how many reverse proxies in front of the app append to
      ``X-Forwarded-For``; 0 (default) ignores the header, because clients can forge it.
    - ``country_header``: a header holding the client's country (``cf-ipcountry``).
    """

    identify: Callable[[Any], str | None] | None = None
    consumer_header: str | None = "x-api-key"
    hash_consumer: bool = True
    hash_key: str | None = None
    trusted_proxies: int = 0
    country_header: str | None = None
    capture_ip: bool = True
    capture_user_agent: bool = True


def hash_consumer(value: str, key: str) -> str:
    """Stable 96-bit keyed hash of a consumer id: same input and key, same series."""
    return hash_consumer_id(value, key)


def resolve_options(options: CaptureOptions | None, settings: AgentSettings) -> CaptureOptions:
    """The options with their hash key filled in from the settings; checked at startup.

    Raises ``MissingHashKey`` when hashing is on, the agent is enabled and no key is
    known: better a failed deploy than consumer ids anyone can recompute.
    """
    options = options or CaptureOptions()
    if not options.hash_consumer or options.hash_key:
        return options
    key = settings.consumer_hash_key.get_secret_value()
    if not key and settings.enabled:
        raise MissingHashKey(MISSING_HASH_KEY)
    return dataclasses.replace(options, hash_key=key)


def consumer_id(raw: str | None, options: CaptureOptions) -> str | None:
    if not raw:
        return None
    if options.hash_consumer:
        return hash_consumer_id(raw, options.hash_key or "")
    return storable_text(raw, MAX_API_KEY) or None


def storable_text(value: str, limit: int) -> str:
    """``value`` without U+0000, lone surrogates as ``?``, at most ``limit`` characters.

    ASCII text (nearly all of it) costs one ``isascii`` and one ``in``.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value if len(value) <= limit else value[:limit]


def _storable_ip(ip: str) -> str | None:
    """The IP if it looks like one (the gateway refuses other characters), else None."""
    return ip if len(ip) <= MAX_IP and not ip.strip(IP_CHARS) else None


def _clamp(value: float, high: float) -> float:
    return value if 0 <= value <= high else (0 if not value > 0 else high)


def client_ip(peer: str | None, forwarded_for: str | None, trusted_proxies: int) -> str | None:
    """The client address: the peer, or the entry ``trusted_proxies`` from the right of XFF.

    Each trusted proxy appends the address it saw, so the client is the N-th entry from the
    right; anything further left was written by the client and cannot be trusted.
    """
    if trusted_proxies <= 0 or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    if len(hops) < trusted_proxies:
        return hops[0] if hops else peer
    return hops[-trusted_proxies]


@lru_cache(maxsize=4096)
def template_from_rule(rule: str) -> str:
    """Flask/Werkzeug and Django path converters to the ``{name}`` template style."""
    path = _RULE_PARAM.sub(r"{\1}", rule)
    return path if path.startswith("/") else "/" + path


def build_event(
    *,
    event_id: str,
    timestamp: float,
    method: str,
    path: str,
    endpoint: str | None,
    status_code: int,
    latency_ms: float,
    request_bytes: int,
    response_bytes: int,
    api_key: str | None,
    ip: str | None,
    user_agent: str | None,
    country: str | None,
    function: str | None,
) -> dict[str, Any]:
    """The event as the gateway's ``IncomingEvent`` expects it; absent fields left out.

    Every value is made storable (see the module docstring), so the gateway never refuses
    an event for what the request held.
    """
    path = storable_text(path, MAX_PATH)
    event: dict[str, Any] = {
        "event_id": storable_text(event_id, MAX_EVENT_ID),
        "timestamp": timestamp,
        "method": storable_text(method, MAX_METHOD).upper() or "GET",
        "path": path if path.startswith("/") else ("/" + path)[:MAX_PATH],
        "status_code": status_code,
        "latency_ms": _clamp(latency_ms, MAX_LATENCY_MS),
        "request_bytes": int(_clamp(request_bytes, MAX_BYTES)),
        "response_bytes": int(_clamp(response_bytes, MAX_BYTES)),
    }
    if endpoint and (endpoint := storable_text(endpoint, MAX_ENDPOINT)):
        event["endpoint"] = endpoint
    if api_key and (api_key := storable_text(api_key, MAX_API_KEY)):
        event["api_key"] = api_key
    if ip and (ip := _storable_ip(ip)):
        event["ip"] = ip
    if user_agent and (user_agent := storable_text(user_agent, MAX_USER_AGENT)):
        event["user_agent"] = user_agent
    if country and len(country) == 2 and country.isascii() and country.isalpha():
        event["country"] = country
    if function and (function := storable_text(function, MAX_FUNCTION)):
        event["function"] = function
    return event
