"""Per-write-key ingest rate limit: a token bucket counted in events (pure logic).

Counted in events rather than requests, because a request carries 1 to 10,000 of them. Each
worker process enforces its share (rate / workers) so the limit holds across workers without
shared state; a key's traffic spread evenly over the workers sees the configured total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

_MAX_BUCKETS: Final = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One bucket per key; ``take`` answers 0 (allowed) or the seconds to wait."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def take(self, key: str, amount: int, now: float) -> float:
        """Take ``amount`` tokens; return 0 when allowed, else seconds until it would be."""
        if self._rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._buckets.clear()  # bounded memory; forgotten keys restart full
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        if bucket.tokens >= amount:
            bucket.tokens -= amount
            return 0.0
        return (amount - bucket.tokens) / self._rate


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, at least one (``Retry-After`` takes integers)."""
    return str(max(1, math.ceil(wait_s)))
