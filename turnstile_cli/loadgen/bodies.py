"""Request bodies (JSON arrays of events) built by Arrow kernels, a range of batches at once.

No Python object per event: each row's JSON text is joined element-wise from the columns in
C++, and the rows of each batch are joined into one string per batch. Every string the
generator makes is plain ASCII without quotes or backslashes, so nothing needs escaping.
Timestamps and latencies are written as exact decimals (ms and µs resolution), so the
gateway reads back exactly the values the ground truth was computed from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from turnstile_cli.loadgen.generator import Traffic


def _decimal(units: np.ndarray[Any, Any], scale: int, digits: int) -> pa.Array:
    """``units / scale`` as an exact decimal string (``units`` >= 0)."""
    whole = pc.cast(pa.array(units // scale), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(units % scale), pa.string()), digits, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


def _rows(traffic: Traffic, rows: np.ndarray[Any, Any]) -> pa.Array:
    at = pa.array(rows)
    spec = traffic.spec
    methods = pa.array([e.method for e in spec.endpoints]).take(pa.array(traffic.endpoint[rows]))
    parts: list[Any] = [
        '{"event_id":"', traffic.event_id.take(at),
        '","timestamp":', _decimal(traffic.timestamp_ms[rows], 1000, 3),
        ',"method":"', methods,
        '","path":"', traffic.path.take(at),
    ]
    if spec.send_endpoint:
        templates = pa.array([e.template for e in spec.endpoints])
        parts += ['","endpoint":"', templates.take(pa.array(traffic.endpoint[rows]))]
    parts += [
        '","status_code":', pc.cast(pa.array(traffic.status[rows]), pa.string()),
        ',"latency_ms":', _decimal(traffic.latency_us[rows], 1000, 3),
        ',"request_bytes":', pc.cast(pa.array(traffic.request_bytes[rows]), pa.string()),
        ',"response_bytes":', pc.cast(pa.array(traffic.response_bytes[rows]), pa.string()),
        ',"api_key":"', traffic.api_key.take(at),
        '","ip":"', traffic.ip.take(at),
        '","user_agent":"', traffic.user_agent.take(at),
        '","country":"', traffic.country.take(at),
        '"}',
    ]
    return pc.binary_join_element_wise(*parts, "")


def encode_bodies(traffic: Traffic, first: int, stop: int) -> list[bytes]:
    """The JSON bodies of batches ``first .. stop - 1`` (uncompressed)."""
    if stop <= first:
        return []
    offsets = traffic.batch_offsets[first:stop + 1]
    rows = _rows(traffic, traffic.batch_rows[offsets[0]:offsets[-1]])
    lists = pa.ListArray.from_arrays(pa.array(offsets - offsets[0], pa.int32()), rows)
    joined = pc.binary_join(lists, ",")
    return [b"[" + s.encode() + b"]" for s in joined.to_pylist()]


def event_dicts(traffic: Traffic, batch: int) -> list[dict[str, Any]]:
    """One batch as the dicts an agent's ``Sender.record`` takes (the agent path only)."""
    rows = traffic.rows_of(batch)
    at = pa.array(rows)
    spec = traffic.spec
    ep = traffic.endpoint[rows].tolist()
    columns: dict[str, list[Any]] = {
        "event_id": traffic.event_id.take(at).to_pylist(),
        "timestamp": (traffic.timestamp_ms[rows] / 1000).tolist(),
        "method": [spec.endpoints[e].method for e in ep],
        "path": traffic.path.take(at).to_pylist(),
        "status_code": traffic.status[rows].tolist(),
        "latency_ms": (traffic.latency_us[rows] / 1000).tolist(),
        "request_bytes": traffic.request_bytes[rows].tolist(),
        "response_bytes": traffic.response_bytes[rows].tolist(),
        "api_key": traffic.api_key.take(at).to_pylist(),
        "ip": traffic.ip.take(at).to_pylist(),
        "user_agent": traffic.user_agent.take(at).to_pylist(),
        "country": traffic.country.take(at).to_pylist(),
    }
    if spec.send_endpoint:
        columns["endpoint"] = [spec.endpoints[e].template for e in ep]
    names = list(columns)
    return [dict(zip(names, values, strict=True))
            for values in zip(*columns.values(), strict=True)]
