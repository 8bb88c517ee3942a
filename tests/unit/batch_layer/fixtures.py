"""Event generators shared by the batch layer's unit and integration tests."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from schemas.event import EventRecord

DAY = date(2026, 11, 20)
DAY_START_US = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 1_000_000)
US_PER_DAY = 86_400_000_000
ENDPOINTS = ["/v1/search", "/v1/search/advanced", "/v1/users/{id}", "/v1/orders", "/health"]
STATUSES = [200, 200, 200, 201, 204, 400, 404, 429, 500, 503]


def make_events(n: int, *, seed: int = 1, projects: tuple[str, ...] = ("acme", "globex"),
                keys: int = 5, day_start_us: int = DAY_START_US, days: int = 1
                ) -> list[EventRecord]:
    """``n`` distinct events spread over ``days`` UTC days from ``day_start_us``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ts = day_start_us + rng.randrange(days * US_PER_DAY)
        endpoint = rng.choice(ENDPOINTS)
        out.append(EventRecord(
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            project_id=rng.choice(projects),
            timestamp_us=ts,
            received_at_us=ts + rng.randrange(1_000_000),
            method=rng.choice(["GET", "POST"]),
            path=endpoint.replace("{id}", str(rng.randrange(1000))),
            endpoint=endpoint,
            status_code=rng.choice(STATUSES),
            latency_ms=rng.random() * 100,
            request_bytes=rng.randrange(5000),
            response_bytes=rng.randrange(50000),
            api_key=f"key-{rng.randrange(keys)}",
            country=rng.choice(["DE", "US", None]),
            tags={"region": "eu"} if rng.random() < 0.1 else None,
        ))
    return out


@dataclass
class Truth:
    """Per (project, api_key, day) figures computed independently of the code under test."""

    total: Counter[tuple[str, str, date]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str, date]] = field(default_factory=Counter)
    server_errors: Counter[tuple[str, str, date]] = field(default_factory=Counter)
    bytes_in: Counter[tuple[str, str, date]] = field(default_factory=Counter)
    bytes_out: Counter[tuple[str, str, date]] = field(default_factory=Counter)
    tiers: Counter[tuple[str, str, date, str]] = field(default_factory=Counter)


def truth_of(events: list[EventRecord], tier_for=lambda project, endpoint: "default") -> Truth:
    """Exact usage of *distinct* events (the caller passes each event once)."""
    t = Truth()
    seen = set()
    for e in events:
        if (e.project_id, e.event_id) in seen:
            continue
        seen.add((e.project_id, e.event_id))
        day = datetime.fromtimestamp(e.timestamp_us / 1e6, UTC).date()
        k = (e.project_id, e.api_key, day)
        t.total[k] += 1
        t.errors[k] += e.status_code >= 400
        t.server_errors[k] += e.status_code >= 500
        t.bytes_in[k] += e.request_bytes
        t.bytes_out[k] += e.response_bytes
        t.tiers[(*k, tier_for(e.project_id, e.endpoint))] += 1
    return t
