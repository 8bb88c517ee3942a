"""Seeded traffic with a ground truth: ``turnstile loadgen``, and a library for tests/benchmarks.

``generate(TrafficSpec(...))`` draws a run's events (pure, vectorised, deterministic);
``ground_truth(traffic)`` says exactly what billing, ``metrics_1m`` and ``late_events`` must
hold for it; ``DirectSender`` / ``send_via_agent`` deliver it to a gateway.

Names are imported on first use, so ``turnstile --help`` does not load numpy and Arrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from turnstile_cli.loadgen.bodies import encode_bodies, event_dicts
    from turnstile_cli.loadgen.generator import Traffic, generate
    from turnstile_cli.loadgen.lateness import LATE_BEYOND, LATE_WITHIN, ON_TIME
    from turnstile_cli.loadgen.profile import DEFAULT_ENDPOINTS, Endpoint, TrafficSpec
    from turnstile_cli.loadgen.senders import (
        DirectSender,
        LoadgenError,
        SendReport,
        send_via_agent,
    )
    from turnstile_cli.loadgen.truth import GroundTruth, ground_truth

_HOME = {
    "encode_bodies": "bodies", "event_dicts": "bodies",
    "Traffic": "generator", "generate": "generator",
    "LATE_BEYOND": "lateness", "LATE_WITHIN": "lateness", "ON_TIME": "lateness",
    "DEFAULT_ENDPOINTS": "profile", "Endpoint": "profile", "TrafficSpec": "profile",
    "DirectSender": "senders", "LoadgenError": "senders", "SendReport": "senders",
    "send_via_agent": "senders",
    "GroundTruth": "truth", "ground_truth": "truth",
}
__all__ = [
    "DEFAULT_ENDPOINTS", "LATE_BEYOND", "LATE_WITHIN", "ON_TIME", "DirectSender", "Endpoint",
    "GroundTruth", "LoadgenError", "SendReport", "Traffic", "TrafficSpec", "encode_bodies",
    "event_dicts", "generate", "ground_truth", "send_via_agent",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
