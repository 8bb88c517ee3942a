"""Webhook signatures: what a receiver accepts and what it must refuse."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from alerting.webhook_signing import REPLAY_WINDOW_S, sign, verify
from schemas.alerts import AlertTargetPolicy

SECRET = "whsec_" + "ab" * 32
BODY = b'{"kind":"firing","value":0.3}'


def test_the_header_is_hmac_sha256_over_timestamp_dot_body():
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify(SECRET, BODY, header, now=1_700_000_010) is None


@pytest.mark.parametrize(("body", "secret", "now", "reason"), [
    (BODY.replace(b"0.3", b"0.0"), SECRET, 1_700_000_000, "does not match"),
    (BODY, SECRET + "x", 1_700_000_000, "does not match"),
    (BODY, SECRET, 1_700_000_000 + REPLAY_WINDOW_S + 1, "replay window"),
    (BODY, SECRET, 1_700_000_000 - REPLAY_WINDOW_S - 1, "replay window"),
])
def test_a_tampered_body_a_wrong_secret_or_a_stale_timestamp_is_refused(body, secret, now,
                                                                       reason):
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    assert reason in (verify(secret, body, header, now=now) or "")


def test_a_refreshed_timestamp_without_the_secret_is_refused():
    old = sign(SECRET, BODY, timestamp=1_700_000_000)
    forged = old.replace("t=1700000000", "t=1700000500")
    assert "does not match" in (verify(SECRET, BODY, forged, now=1_700_000_500) or "")


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", "t=1700000000"])
def test_a_malformed_header_is_refused(header):
    assert verify(SECRET, BODY, header, now=1_700_000_000) == "malformed signature header"


@pytest.mark.parametrize(("target", "ok"), [
    ("oncall@example.com", True), ("a@example.com, b.c+tag@ops.example.org", True),
    ("", False), ("not-an-address", False), ("a@example.com,evil", False),
    (",".join(f"u{i}@example.com" for i in range(21)), False),
])
def test_email_targets_are_plain_address_lists(target, ok):
    assert (AlertTargetPolicy().problem("email", target) is None) is ok


README_SNIPPET = '''
import hashlib, hmac, time

def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """header: the Turnstile-Signature value, e.g. 't=1700000000,v1=5f2c...'."""
    try:
        fields = dict(p.split("=", 1) for p in header.split(","))
        t, given = int(fields["t"]), fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance:
        return False  # replayed, or a badly skewed clock
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
'''


def test_the_readme_snippet_agrees_with_the_sender():
    scope: dict = {}
    exec(README_SNIPPET, scope)  # noqa: S102 - our own snippet, as published
    check = scope["verify"]
    assert len(README_SNIPPET.strip().splitlines()) <= 15
    assert check(SECRET, BODY, sign(SECRET, BODY))
    assert not check(SECRET, BODY + b" ", sign(SECRET, BODY))
    assert not check(SECRET, BODY, sign(SECRET, BODY, int(time.time()) - 301))
    assert not check(SECRET, BODY, "garbage")
