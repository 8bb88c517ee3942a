"""Small traffic specs for the loadgen's unit tests, and the gateway's reading of a body."""

from __future__ import annotations

from schemas.event import EventRecord
from schemas.validation import validate_batch
from turnstile_cli.loadgen import Traffic, TrafficSpec, encode_bodies

START_US = 1_764_669_600_000_000  # 2025-12-02T10:00:00Z


def small_spec(**overrides: object) -> TrafficSpec:
    values: dict[str, object] = dict(
        seed=7, events=20_000, start_us=START_US, events_per_s=40.0, projects=("shop", "maps"),
        consumers=30, batch_size=200, duplicate_rate=0.05, late_rate=0.05, in_flight=3,
    )
    values.update(overrides)
    return TrafficSpec(**values)  # type: ignore[arg-type]


def gateway_records(traffic: Traffic) -> list[list[EventRecord]]:
    """Each batch as the gateway turns it into records (batch id and positions stamped)."""
    out = []
    for b, body in enumerate(encode_bodies(traffic, 0, traffic.batches)):
        validated = validate_batch(body, project_id=traffic.spec.projects[
            traffic.batch_project[b]], received_at_us=START_US + 86_400_000_000,
            batch_id=traffic.batch_ids[b])
        assert not validated.rejected, validated.rejected[:2]
        out.append(validated.records)
    return out
