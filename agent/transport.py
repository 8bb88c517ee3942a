"""A minimal keep-alive HTTP POST client on the standard library (no extra dependency).

Used only by the sender's background thread, one connection at a time; any failure closes
the connection so the next attempt starts clean.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from schemas.ingest_wire import INGEST_BATCH_PATH

BATCH_PATH = INGEST_BATCH_PATH  # the name turnstile_cli.loadgen imports


class TransportError(Exception):
    """The request did not complete (connection refused, reset, timeout)."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    retry_after_s: float | None
    body: bytes


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class HttpTransport:
    """POSTs batches to ``<url>`` + ``INGEST_BATCH_PATH`` over one reused connection."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"agent url must be http(s)://host[:port][/prefix], got {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path.rstrip("/") + INGEST_BATCH_PATH
        self._timeout = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def post(self, body: bytes, headers: dict[str, str]) -> HttpResponse:
        conn = self._connection()
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if resp.will_close:
            self.close()
        return HttpResponse(resp.status, parse_retry_after(resp.getheader("Retry-After")), data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
