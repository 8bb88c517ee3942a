"""Write-key authentication with a short-lived in-process cache.

Every request carries a key, so looking it up in PostgreSQL each time would put the
database on the hot path. Keys are cached by the SHA-256 of the secret (the secret itself is
never kept) for at most ``key_cache_ttl_s`` (≤ 30 s): a revoked key stops working within
that time. Unknown keys are cached briefly too, so a client hammering with a wrong key does
not hammer the database. Concurrent misses for one key share one lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from schemas import keystore
from schemas.keys import KeyKind, looks_like_key

_MAX_ENTRIES: Final = 100_000
_PRIVACY_SQL: Final = "SELECT ip_privacy FROM projects WHERE project_id = %s"


class IpPrivacy(StrEnum):
    """What the gateway stores of a client IP, per project (``projects.ip_privacy``)."""

    KEEP = "keep"
    TRUNCATE = "truncate"
    HASH = "hash"


class Denial(StrEnum):
    """Why a key may not write (the metric label and the response message key)."""

    MISSING = "missing_key"
    UNKNOWN = "unknown_key"
    NOT_WRITE = "not_a_write_key"


@dataclass(frozen=True, slots=True)
class WriteKey:
    """What a request needs to know about its (valid, write) key."""

    key_id: str
    project_id: str
    ip_privacy: IpPrivacy


Lookup = WriteKey | Denial


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be asked in time (→ 503, never 401)."""


class KeyCache:
    """TTL cache of lookups by secret digest; pure, the clock is passed in."""

    def __init__(self, ttl_s: float, negative_ttl_s: float, max_entries: int = _MAX_ENTRIES):
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._max = max_entries
        self._entries: dict[bytes, tuple[float, Lookup]] = {}

    def get(self, digest: bytes, now: float) -> Lookup | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires, value = entry
        if now >= expires:
            del self._entries[digest]
            return None
        return value

    def put(self, digest: bytes, value: Lookup, now: float) -> None:
        ttl = self._ttl if isinstance(value, WriteKey) else self._negative_ttl
        if ttl <= 0:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()  # crude but bounded; refills at the database's pace
        self._entries[digest] = (now + ttl, value)


def secret_from_headers(x_api_key: str | None, authorization: str | None) -> str | None:
    """The presented secret: ``X-Api-Key`` or ``Authorization: Bearer <secret>``."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def lookup_write_key(conn: psycopg.Connection[Any], secret: str) -> Lookup:
    """Ask PostgreSQL: the key's project and IP privacy, or why it may not write."""
    info = keystore.authenticate(conn, secret)
    if info is None:
        return Denial.UNKNOWN
    if info.kind is not KeyKind.WRITE:
        return Denial.NOT_WRITE
    row = conn.execute(_PRIVACY_SQL, (info.project_id,)).fetchone()
    privacy = IpPrivacy(row[0]) if row and row[0] else IpPrivacy.KEEP
    return WriteKey(key_id=info.key_id, project_id=info.project_id, ip_privacy=privacy)


class Authenticator:
    """Cached write-key lookups over a small psycopg pool (queries run in a thread)."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        ttl_s: float,
        negative_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        pool_timeout_s: float = 3.0,
    ) -> None:
        self._pool = pool
        self._cache = KeyCache(ttl_s, negative_ttl_s)
        self._clock = clock
        self._pool_timeout = pool_timeout_s
        self._inflight: dict[bytes, asyncio.Future[Lookup]] = {}

    async def authenticate(self, secret: str | None) -> Lookup:
        if not secret:
            return Denial.MISSING
        if not looks_like_key(secret):
            return Denial.UNKNOWN
        digest = hashlib.sha256(secret.encode()).digest()
        cached = self._cache.get(digest, self._clock())
        if cached is not None:
            return cached
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            result = await asyncio.to_thread(self._query, secret)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters, if any, get it via shield
            raise
        finally:
            self._inflight.pop(digest, None)
        self._cache.put(digest, result, self._clock())
        future.set_result(result)
        return result

    def _query(self, secret: str) -> Lookup:
        try:
            with self._pool.connection(timeout=self._pool_timeout) as conn:
                return lookup_write_key(conn, secret)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise DatabaseUnavailable(str(exc)) from exc
