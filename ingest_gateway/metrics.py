"""Prometheus metrics of the gateway, safe under several uvicorn worker processes.

With more than one worker, ``turnstile gateway`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh folder before the workers start, so each writes its samples there and ``/metrics``
(served by any worker) aggregates all of them.
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

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


def render() -> tuple[bytes, str]:
    """The exposition text: this process's metrics, or all workers' in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Drop a stopped worker's live-gauge files (counters stay: they are totals)."""
    if os.environ.get(MULTIPROC_ENV):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
