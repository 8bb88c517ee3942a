"""What every middleware captures, and how: consumer identity, client IP, the event dict.

Shared by the ASGI, WSGI and Django middleware so the three produce identical events. The
consumer (the API's customer, ``api_key`` in the event) comes from a user function or a
request header and is hashed by default, so a raw credential never leaves the host.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

_RULE_PARAM: Final = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
_MAX_CONSUMER_CHARS: Final = 128


@dataclass(frozen=True)
class CaptureOptions:
    """How the middleware reads a request.

    - ``identify``: a function of the framework's request object (ASGI: the scope; WSGI: the
      environ; Django: the HttpRequest) returning the consumer id, or None.
    - ``consumer_header``: else the consumer comes from this header (e.g. ``x-api-key``).
    - ``hash_consumer``: send a keyed BLAKE2 hash instead of the value (default).
    - ``trusted_proxies``: how many reverse proxies in front of the app append to
      ``X-Forwarded-For``; 0 (default) ignores the header, because clients can forge it.
    - ``country_header``: a header holding the client's country (``cf-ipcountry``).
    """

    identify: Callable[[Any], str | None] | None = None
    consumer_header: str | None = "x-api-key"
    hash_consumer: bool = True
    hash_salt: str = ""
    trusted_proxies: int = 0
    country_header: str | None = None
    capture_ip: bool = True
    capture_user_agent: bool = True


@lru_cache(maxsize=8192)
def hash_consumer(value: str, salt: str = "") -> str:
    """Stable 96-bit keyed hash of a consumer id: same input, same series; not reversible."""
    return hashlib.blake2b(value.encode(), digest_size=12, key=salt.encode()[:64]).hexdigest()


def consumer_id(raw: str | None, options: CaptureOptions) -> str | None:
    if not raw:
        return None
    if options.hash_consumer:
        return hash_consumer(raw, options.hash_salt)
    return raw[:_MAX_CONSUMER_CHARS]


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
    """The event as the gateway's ``IncomingEvent`` expects it; absent fields left out."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": timestamp,
        "method": method,
        "path": path[:2048] or "/",
        "status_code": status_code,
        "latency_ms": latency_ms,
        "request_bytes": request_bytes,
        "response_bytes": response_bytes,
    }
    if endpoint:
        event["endpoint"] = endpoint[:512]
    if api_key:
        event["api_key"] = api_key
    if ip:
        event["ip"] = ip
    if user_agent:
        event["user_agent"] = user_agent[:512]
    if country and len(country) == 2 and country.isalpha():
        event["country"] = country
    if function:
        event["function"] = function[:256]
    return event
