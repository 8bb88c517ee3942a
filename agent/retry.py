"""What to do with a gateway answer, and how long to wait before trying again (pure logic)."""

from __future__ import annotations

import random
from enum import Enum
from typing import Final

_RETRYABLE: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
# A Retry-After beyond this is treated as this: a misconfigured proxy must not park the
# agent for a day while its bounded buffer overflows.
MAX_RETRY_AFTER_S: Final = 300.0


class Outcome(Enum):
    """The fate of one attempt at sending a batch."""

    DELIVERED = "delivered"  # 2xx: the gateway holds it (202 means durable in Kafka)
    RETRY = "retry"  # the gateway or the network is unwell: same batch again, later
    REFUSED = "refused"  # the gateway will never take this batch (bad key, bad body)


def classify(status: int | None) -> Outcome:
    """``None`` is a transport failure (connection refused, reset, timeout): retry."""
    if status is None or status in _RETRYABLE:
        return Outcome.RETRY
    if 200 <= status < 300:
        return Outcome.DELIVERED
    return Outcome.REFUSED if 400 <= status < 500 else Outcome.RETRY


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with "equal jitter", never shorter than the server's Retry-After.

    Half of the exponential step is fixed and half random, so many agents that failed at the
    same moment spread out without any of them retrying immediately.
    """
    step = min(max_s, base_s * (2.0 ** min(attempt, 30)))
    unit = rng.random() if rng is not None else random.random()  # noqa: S311 - not crypto
    jitter = unit * step / 2
    delay = step / 2 + jitter
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay
