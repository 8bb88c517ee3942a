"""FastAPI dependencies: the connection pool, the lake, and key authentication.

Keys come as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (``X-Auth-Token`` too,
as APInalytics clients send it). Analytics routes accept read and admin keys; management
routes only admin keys; write keys (agents) are refused here. The project a route serves is
always the key's own project, never a parameter, which is what isolates tenants.
A short TTL cache keeps authentication off the database for repeated calls; a revoked key
is refused by every process within ``auth_cache_ttl_s`` (and at once by the process that
revoked it).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from query_api.lake import Lake
from query_api.problems import ProblemError
from query_api.settings import QuerySettings
from schemas import keystore
from schemas.keys import KeyInfo, KeyKind

_MAX_CACHED = 10_000


class KeyCache:
    """secret digest → (KeyInfo or None, expiry); thread-safe, bounded, TTL-based."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[bytes, tuple[KeyInfo | None, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def digest(secret: str) -> bytes:
        return hashlib.sha256(secret.encode()).digest()

    def get(self, secret: str) -> tuple[bool, KeyInfo | None]:
        """(hit, info); a hit with None means "known to be invalid"."""
        with self._lock:
            entry = self._entries.get(self.digest(secret))
        if entry is None or entry[1] <= self._clock():
            return False, None
        return True, entry[0]

    def put(self, secret: str, info: KeyInfo | None) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= _MAX_CACHED:
                self._entries.clear()
            self._entries[self.digest(secret)] = (info, self._clock() + self._ttl)

    def forget_key(self, key_id: str) -> None:
        with self._lock:
            for digest, (info, _) in list(self._entries.items()):
                if info is not None and info.key_id == key_id:
                    del self._entries[digest]


def get_settings(request: Request) -> QuerySettings:
    settings: QuerySettings = request.app.state.settings
    return settings


def get_conn(request: Request) -> Iterator[psycopg.Connection[Any]]:
    pool: ConnectionPool[psycopg.Connection[Any]] = request.app.state.pool
    with pool.connection() as conn:
        yield conn


def get_lake(request: Request) -> Lake:
    lake: Lake = request.app.state.lake
    return lake


def get_key_cache(request: Request) -> KeyCache:
    cache: KeyCache = request.app.state.key_cache
    return cache


def get_now() -> datetime:
    return datetime.now(UTC)


_bearer = HTTPBearer(auto_error=False, description="A read key (analytics) or admin key.")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def _presented_secret(request: Request, bearer: HTTPAuthorizationCredentials | None,
                      header: str | None) -> str | None:
    if bearer is not None:
        return bearer.credentials
    return header or request.headers.get("x-auth-token")


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Unauthorized", detail,
                        headers={"WWW-Authenticate": 'Bearer realm="turnstile"'})


def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_api_key_header)],
) -> KeyInfo:
    """The caller's active key, from the cache or the database; 401 otherwise."""
    secret = _presented_secret(request, bearer, header)
    if not secret:
        raise _unauthorized("missing key: send Authorization: Bearer <key>")
    cache: KeyCache = request.app.state.key_cache
    hit, info = cache.get(secret)
    if not hit:
        pool: ConnectionPool[psycopg.Connection[Any]] = request.app.state.pool
        with pool.connection() as conn:
            info = keystore.authenticate(conn, secret)
        cache.put(secret, info)
    if info is None:
        raise _unauthorized("unknown or revoked key")
    return info


def require_read(key: Annotated[KeyInfo, Depends(authenticate)]) -> KeyInfo:
    if key.kind not in (KeyKind.READ, KeyKind.ADMIN):
        raise ProblemError(403, "Forbidden", f"a {key.kind.value} key cannot read analytics; "
                           "use a read or admin key")
    return key


def require_admin(key: Annotated[KeyInfo, Depends(authenticate)]) -> KeyInfo:
    if key.kind is not KeyKind.ADMIN:
        raise ProblemError(403, "Forbidden", "this route needs an admin key")
    return key


ReadKey = Annotated[KeyInfo, Depends(require_read)]
AdminKey = Annotated[KeyInfo, Depends(require_admin)]
ConnDep = Annotated[psycopg.Connection[Any], Depends(get_conn)]
LakeDep = Annotated[Lake, Depends(get_lake)]
SettingsDep = Annotated[QuerySettings, Depends(get_settings)]
NowDep = Annotated[datetime, Depends(get_now)]
KeyCacheDep = Annotated[KeyCache, Depends(get_key_cache)]
