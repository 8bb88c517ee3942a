"""The ground truth of a run: what every layer of the pipeline must report for it.

- ``counts``: exact requests per (project, api_key, day, endpoint, status class), with the
  bytes in/out and how many of them were late beyond the speed layer's lateness (billing
  counts those; ``metrics_1m`` does not, ``late_events`` does);
- ``percentiles``: exact latency p50/p95/p99 per (project, endpoint, day), numpy's linear
  interpolation over every event;
- ``late_beyond``: late-beyond events per (project, api_key, minute), as ``late_events``;
- ``duplicate_batch_ids``: batches sent twice (billing and the stream must count them once).

Computed from the generated columns with Arrow group-bys. Saved as JSON, or as Parquet (the
counts as the table, the rest as JSON in the file's metadata).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from turnstile_cli.loadgen.generator import Traffic
from turnstile_cli.loadgen.lateness import LATE_BEYOND, LATE_WITHIN

FORMAT = "turnstile-loadgen-truth/1"
_META_KEY = b"turnstile.truth"
_DAY_MS = 86_400_000
_MINUTE_MS = 60_000
_QUANTILES = (0.5, 0.95, 0.99)
CountKey = tuple[str, str, str, str, int]  # project, api_key, day (ISO), endpoint, class


@dataclass(frozen=True)
class GroundTruth:
    """Exact expectations for one run; rows are plain tuples so tests compare directly."""

    counts: dict[CountKey, tuple[int, int, int, int]]  # requests, late_beyond, bytes in/out
    percentiles: dict[tuple[str, str, str], tuple[int, float, float, float]]
    late_beyond: dict[tuple[str, str, str], int]  # project, api_key, minute (ISO, Z)
    duplicate_batch_ids: list[str]
    summary: dict[str, Any] = field(default_factory=dict)

    # -- views the truth test needs ----------------------------------------------------------
    def requests_per_key_day(self) -> dict[tuple[str, str, str], int]:
        out: dict[tuple[str, str, str], int] = {}
        for (p, k, d, _, _), (n, _, _, _) in self.counts.items():
            out[(p, k, d)] = out.get((p, k, d), 0) + n
        return out

    def stream_counts(self) -> dict[CountKey, int]:
        """What ``metrics_1m`` must hold: every request except the late-beyond ones."""
        return {k: n - beyond for k, (n, beyond, _, _) in self.counts.items() if n > beyond}

    # -- files -----------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "summary": self.summary,
            "percentiles": {"quantiles": list(_QUANTILES), "method": "linear",
                            "columns": ["project_id", "endpoint", "day", "requests",
                                        "p50", "p95", "p99"],
                            "rows": [[*k, *v] for k, v in sorted(self.percentiles.items())]},
            "late_beyond_lateness": {
                "columns": ["project_id", "api_key", "minute", "events"],
                "rows": [[*k, v] for k, v in sorted(self.late_beyond.items())]},
            "duplicate_batch_ids": self.duplicate_batch_ids,
        }

    _COUNT_COLUMNS = ("project_id", "api_key", "day", "endpoint", "status_class",
                      "requests", "late_beyond", "bytes_in", "bytes_out")

    def save(self, path: Path) -> None:
        """JSON unless ``path`` ends in ``.parquet``."""
        rows = [[*k, *v] for k, v in sorted(self.counts.items())]
        if path.suffix == ".parquet":
            table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(self._COUNT_COLUMNS)})
            table = table.replace_schema_metadata({_META_KEY: json.dumps(self._meta())})
            pq.write_table(table, path)
            return
        doc = self._meta()
        doc["counts"] = {"columns": list(self._COUNT_COLUMNS), "rows": rows}
        path.write_text(json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> GroundTruth:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
            rows = [list(r.values()) for r in table.to_pylist()]
        else:
            meta = json.loads(path.read_text())
            rows = meta.get("counts", {}).get("rows", [])
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
        return cls(
            counts={(p, k, d, e, int(s)): (int(n), int(b), int(bi), int(bo))
                    for p, k, d, e, s, n, b, bi, bo in rows},
            percentiles={(p, e, d): (int(n), a, b, c)
                         for p, e, d, n, a, b, c in meta["percentiles"]["rows"]},
            late_beyond={(p, k, m): int(v)
                         for p, k, m, v in meta["late_beyond_lateness"]["rows"]},
            duplicate_batch_ids=list(meta["duplicate_batch_ids"]),
            summary=meta["summary"],
        )


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).date().isoformat()


def _minute(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:00Z")


def ground_truth(traffic: Traffic, duplicate_batch_ids: list[str] | None = None
                 ) -> GroundTruth:
    """The truth of ``traffic``; ``duplicate_batch_ids`` when the sender chose them (agent)."""
    spec = traffic.spec
    day_ms = traffic.timestamp_ms // _DAY_MS * _DAY_MS
    table = pa.table({
        "project": pa.array(traffic.project),
        "api_key": traffic.api_key,
        "day_ms": pa.array(day_ms),
        "endpoint": pa.array(traffic.endpoint),
        "status_class": pa.array(traffic.status // 100),
        "beyond": pa.array((traffic.late == LATE_BEYOND).astype(np.int64)),
        "bytes_in": pa.array(traffic.request_bytes),
        "bytes_out": pa.array(traffic.response_bytes),
    })
    keys = ["project", "api_key", "day_ms", "endpoint", "status_class"]
    grouped = table.group_by(keys).aggregate([
        ("beyond", "count"), ("beyond", "sum"), ("bytes_in", "sum"), ("bytes_out", "sum")])
    projects, templates = spec.projects, [e.template for e in spec.endpoints]
    days = {int(d): _day(int(d)) for d in np.unique(day_ms)}
    counts = {
        (projects[p], k, days[d], templates[e], int(s)): (int(n), int(b), int(bi), int(bo))
        for p, k, d, e, s, n, b, bi, bo in zip(
            *(grouped[c].to_pylist() for c in
              [*keys, "beyond_count", "beyond_sum", "bytes_in_sum", "bytes_out_sum"]),
            strict=True)
    }
    return GroundTruth(
        counts=counts,
        percentiles=_percentiles(traffic, day_ms, days),
        late_beyond=_late_beyond(traffic),
        duplicate_batch_ids=(duplicate_batch_ids if duplicate_batch_ids is not None
                             else [traffic.batch_ids[b] for b in traffic.duplicated_batches]),
        summary=json.loads(json.dumps({  # as it reads back from the file
            "events": len(traffic), "batches": traffic.batches,
            "late_within_lateness": int((traffic.late == LATE_WITHIN).sum()),
            "late_beyond_lateness": int((traffic.late == LATE_BEYOND).sum()),
            "seed": spec.seed, "run_id": spec.id_prefix, "projects": list(spec.projects),
            "first_timestamp_ms": int(traffic.timestamp_ms.min()),
            "last_timestamp_ms": int(traffic.timestamp_ms.max()),
            "spec": {k: v for k, v in asdict(spec).items() if k != "endpoints"},
            "endpoints": [asdict(e) for e in spec.endpoints],
        })),
    )


def _percentiles(traffic: Traffic, day_ms: np.ndarray[Any, Any], days: dict[int, str]
                 ) -> dict[tuple[str, str, str], tuple[int, float, float, float]]:
    """Exact quantiles per (project, endpoint, day): one sort, then a slice per group."""
    spec = traffic.spec
    order = np.lexsort((traffic.latency_us, day_ms, traffic.endpoint, traffic.project))
    group = np.stack([traffic.project[order], traffic.endpoint[order], day_ms[order]])
    starts = np.flatnonzero(np.r_[True, (group[:, 1:] != group[:, :-1]).any(axis=0)])
    ends = np.r_[starts[1:], len(order)]
    latency_ms = traffic.latency_us[order] / 1000
    out = {}
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):  # one step per group
        p, e, d = (int(x) for x in group[:, a])
        q = np.quantile(latency_ms[a:b], _QUANTILES)
        out[(spec.projects[p], spec.endpoints[e].template, days[d])] = (
            b - a, float(q[0]), float(q[1]), float(q[2]))
    return out


def _late_beyond(traffic: Traffic) -> dict[tuple[str, str, str], int]:
    rows = np.flatnonzero(traffic.late == LATE_BEYOND)
    if not len(rows):
        return {}
    minutes = traffic.timestamp_ms[rows] // _MINUTE_MS * _MINUTE_MS
    table = pa.table({"project": pa.array(traffic.project[rows]),
                      "api_key": traffic.api_key.take(pa.array(rows)),
                      "minute": pa.array(minutes)})
    grouped = table.group_by(["project", "api_key", "minute"]).aggregate([("minute", "count")])
    return {(traffic.spec.projects[p], k, _minute(m)): int(n) for p, k, m, n in zip(
        *(grouped[c].to_pylist() for c in ["project", "api_key", "minute", "minute_count"]),
        strict=True)}
