"""Project keys: how they look, how they are hashed, and how they are checked.

A key is shown once at creation: ``tsk_<kind letter>_<43 url-safe chars>`` (256 bits of
randomness). Only its SHA-256 is stored; a slow password hash buys nothing for secrets
this random, and a fast one keeps authentication off the request's critical path. Lookups
go by hash and the match is confirmed with a constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

KEY_PREFIX: Final = "tsk_"
DISPLAY_PREFIX_LENGTH: Final = 12


class KeyKind(StrEnum):
    """What a key may do: agents write events, dashboards read, admins manage."""

    WRITE = "write"
    READ = "read"
    ADMIN = "admin"


_KIND_LETTER: Final = {KeyKind.WRITE: "w", KeyKind.READ: "r", KeyKind.ADMIN: "a"}


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the server knows about a key; never the secret."""

    key_id: str
    project_id: str
    kind: KeyKind
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def generate_secret(kind: KeyKind) -> str:
    return f"{KEY_PREFIX}{_KIND_LETTER[kind]}_{secrets.token_urlsafe(32)}"


def generate_key_id() -> str:
    return f"key_{secrets.token_hex(8)}"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]


def hashes_match(stored: bytes, secret: str) -> bool:
    """Constant-time check of a presented secret against a stored hash."""
    return hmac.compare_digest(stored, hash_secret(secret))


def looks_like_key(secret: str) -> bool:
    """Cheap shape check so garbage never reaches the database."""
    return secret.startswith(KEY_PREFIX) and 40 <= len(secret) <= 80
