"""Signatures of webhook notifications: HMAC-SHA256 over ``timestamp + "." + body``.

Header ``Turnstile-Signature: t=<unix seconds>,v1=<hex digest>``. The secret is the
rule's ``signing_secret``, shown once when the rule is created. Receivers recompute the
digest over the raw body and reject a timestamp older than ``REPLAY_WINDOW_S`` (5 min),
so a captured request cannot be replayed later; the timestamp is signed too, so it
cannot be refreshed without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

SIGNATURE_HEADER: Final = "Turnstile-Signature"
EVENT_ID_HEADER: Final = "Turnstile-Event-Id"  # receivers dedupe on it (at-least-once sends)
REPLAY_WINDOW_S: Final = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` sent at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, body: bytes, header: str, now: float | None = None,
           tolerance_s: int = REPLAY_WINDOW_S) -> str | None:
    """Why the signature is refused, or None when ``body`` is authentic and fresh."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return "malformed signature header"
    current = time.time() if now is None else now
    if abs(current - t) > tolerance_s:
        return f"timestamp outside the {tolerance_s} s replay window"
    expected = sign(secret, body, t).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        return "signature does not match the body"
    return None
