"""Prometheus metrics of the gateway, safe under several uvicorn worker processes.

With more than one worker, ``turnstile gateway`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh folder before the workers start, so each writes its samples there and ``/metrics``
(served by any worker) aggregates all of them.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import (
    Counter,
    Histogram,
)

EVENTS_ACCEPTED: Final = Counter(
    "turnstile_gateway_events_accepted",
    "Events acknowledged by Kafka and answered with 202.",
)
EVENTS_REJECTED: Final = Counter(
    "turnstile_gateway_events_rejected",
    "Events refused inside an otherwise readable batch, by reason.",
    ["reason"],
)
REQUESTS_REJECTED: Final = Counter(
    "turnstile_gateway_requests_rejected",
    "Whole requests refused, by reason (unknown_key, too_large, rate_limited, …).",
    ["reason"],
)
UNAVAILABLE: Final = Counter(
    "turnstile_gateway_unavailable",
    "503 answers, by cause (timeout, queue_full, kafka_error, database).",
    ["cause"],
)
PUBLISH_SECONDS: Final = Histogram(
    "turnstile_gateway_publish_seconds",
    "Time from producing a batch to Kafka acknowledging all of it.",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)




