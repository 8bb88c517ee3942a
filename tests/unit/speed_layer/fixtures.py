"""Builders of records and polls for the speed layer's unit tests."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from schemas.codec import record_key
from schemas.event import EventRecord
from speed_layer.decode import decode_poll
from speed_layer.items import WINDOW_US, MetricRows, ShardBatch
from tests.records import one_per_event

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
ENDPOINTS = ["/users/{id}", "/orders", "/orders/{id}", "/health"]
METHODS = ["GET", "POST"]
STATUSES = [200, 201, 301, 404, 429, 500, 503]


def make_records(n: int, *, seed: int = 0, minutes: int = 3, projects: int = 2, keys: int = 3,
                 start_us: int = T0_US, project_prefix: str = "p") -> list[EventRecord]:
    rng = np.random.default_rng(seed)
    ts = start_us + rng.integers(0, minutes * WINDOW_US, n)
    out = []
    for i in range(n):
        out.append(EventRecord(
            event_id=f"e{seed}-{i}",
            project_id=f"{project_prefix}{rng.integers(projects)}",
            timestamp_us=int(ts[i]),
            received_at_us=int(ts[i]) + 1000,
            method=METHODS[rng.integers(len(METHODS))],
            path="/x",
            endpoint=ENDPOINTS[rng.integers(len(ENDPOINTS))],
            status_code=STATUSES[rng.integers(len(STATUSES))],
            latency_ms=float(rng.lognormal(3, 1)),
            request_bytes=int(rng.integers(0, 5000)),
            response_bytes=int(rng.integers(0, 50000)),
            api_key=f"k{rng.integers(keys)}",
        ))
    return out


def make_batch(records: Sequence[EventRecord], *, partition: int = 0, first_offset: int = 0,
               batch_id: str | Sequence[str] = "", produced_ms: int | Sequence[int] = 0,
               extra_values: Sequence[bytes] = (),
               first_index: int | Sequence[int] = 0) -> ShardBatch:
    """A decoded poll of one v2 record per event (so row i has offset ``first_offset + i``);
    each event carries its batch id and its position in the batch (``first_index``
    onwards), as the gateway writes them; "" gives a fresh id per call."""
    n = len(records) + len(extra_values)
    ids = [batch_id] * len(records) if isinstance(batch_id, str) else list(batch_id)
    values = one_per_event(records, batch_id=ids[:len(records)],
                           first_index=first_index if isinstance(first_index, int)
                           else list(first_index)[:len(records)]) + list(extra_values)
    produced = [produced_ms] * n if isinstance(produced_ms, int) else list(produced_ms)
    keys = [record_key(r.project_id, r.api_key) for r in records] + [None] * len(extra_values)
    return decode_poll(topic="t", partition=partition, values=values, keys=keys,
                       offsets=range(first_offset, first_offset + n), produced_ms=produced)


def reference(records: Sequence[EventRecord]) -> dict[tuple, dict[str, float]]:
    """The expected metrics_1m rows, computed one record at a time in plain Python."""
    out: dict[tuple, dict[str, float]] = defaultdict(lambda: {
        "request_count": 0, "error_count": 0, "server_error_count": 0, "latency_sum": 0.0,
        "latency_min": float("inf"), "latency_max": float("-inf"), "bytes_in": 0, "bytes_out": 0,
    })
    for r in records:
        minute = r.timestamp_us - r.timestamp_us % WINDOW_US
        row = out[(minute, r.project_id, r.api_key, r.endpoint, r.method, r.status_code // 100)]
        row["request_count"] += 1
        row["error_count"] += r.status_code >= 400
        row["server_error_count"] += r.status_code >= 500
        row["latency_sum"] += r.latency_ms
        row["latency_min"] = min(row["latency_min"], r.latency_ms)
        row["latency_max"] = max(row["latency_max"], r.latency_ms)
        row["bytes_in"] += r.request_bytes
        row["bytes_out"] += r.response_bytes
    return dict(out)


def rows_as_dict(rows_list: Sequence[MetricRows | None]) -> dict[tuple, dict[str, float]]:
    """Apply emissions in order as the sink would: a later row replaces an earlier one."""
    out: dict[tuple, dict[str, float]] = {}
    for rows in rows_list:
        if rows is None:
            continue
        for r in rows.to_pylist():
            key = (r["bucket_us"], r["project_id"], r["api_key"], r["endpoint"], r["method"],
                   r["status_class"])
            out[key] = {name: r[name] for name in (
                "request_count", "error_count", "server_error_count", "latency_sum",
                "latency_min", "latency_max", "bytes_in", "bytes_out")}
    return out


def assert_rows_equal(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, row in want.items():
        for name, value in row.items():
            if name == "latency_sum":
                assert abs(got[key][name] - value) <= 1e-9 * max(1.0, abs(value)), (key, name)
            else:
                assert got[key][name] == value, (key, name, got[key][name], value)
