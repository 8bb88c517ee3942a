"""Minute windows of one shard (one Kafka partition) for all of its series, in numpy.

Bytewax state is keyed by shard, not by series: per-key windows cost ~3.5 µs per live key
per activation (FINDINGS.md), so a shard keeps every (minute, series) window itself, in
flat arrays indexed by a slot number, and owns its watermark and lateness rule:

- event time only: the watermark is the newest event timestamp seen by the shard minus
  the allowed lateness. A window ``[m, m + 1 min)`` is closed once ``m + 1 min <=
  watermark``; an event for a closed window is *late* and is reported, not counted.
- the rule is applied with the running maximum *through each record*, so the outcome does
  not depend on how records were cut into polls: a replay after a crash, cut differently,
  classifies every record exactly as the first run did.
- counts, sums, min and max are folded in per poll (vectorised); latencies wait in a
  pending buffer and are folded into each window's t-digest only when it is emitted.
- ``emit()`` returns the *full* state of every window that changed since the previous
  emission (the sink replaces rows, never adds), then forgets closed windows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from fastdigest import TDigest

from schemas.codec import MetricColumns
from speed_layer import digest as tdigest
from speed_layer.dedupe import BatchDeduper
from speed_layer.items import WINDOW_US, Floats, Int64s, LateRows, MetricRows, Objects, ShardBatch

# minute_us, project_id, api_key, endpoint, method, status_class
SeriesKey = tuple[int, str, str, str, str, int]
_MIN_TS = int(np.iinfo(np.int64).min // 2)
# Per-slot arrays: name → (dtype, value of an empty slot).
_COLUMNS: dict[str, tuple[type, float]] = {
    "minute": (np.int64, 0),
    "count": (np.int64, 0),
    "errors": (np.int64, 0),
    "server_errors": (np.int64, 0),
    "bytes_in": (np.int64, 0),
    "bytes_out": (np.int64, 0),
    "lat_sum": (np.float64, 0.0),
    "lat_min": (np.float64, np.inf),
    "lat_max": (np.float64, -np.inf),
    "changed": (np.bool_, False),
    "live": (np.bool_, False),
}


def _codes(values: list[str] | Objects) -> tuple[Int64s, list[str]]:
    """Dictionary-encode strings in C++ (pyarrow): per-row codes and the distinct values."""
    encoded = pa.array(values, type=pa.string()).dictionary_encode()
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return indices, encoded.dictionary.to_pylist()


def _combine(a: Int64s, b: Int64s) -> Int64s:
    """Codes of the pairs (a, b), compacted again so products never overflow."""
    width = int(b.max()) + 1 if len(b) else 1
    _, inverse = np.unique(a * width + b, return_inverse=True)
    return np.asarray(inverse, dtype=np.int64)


class ShardWindows:
    """All open minute windows of one shard. Pickled whole as the Bytewax snapshot."""

    minute: Int64s
    count: Int64s
    errors: Int64s
    server_errors: Int64s
    bytes_in: Int64s
    bytes_out: Int64s
    lat_sum: Floats
    lat_min: Floats
    lat_max: Floats
    changed: npt.NDArray[np.bool_]
    live: npt.NDArray[np.bool_]

    def __init__(
        self, *, allowed_lateness_us: int, compression: int, attempt_window_ms: int
    ) -> None:
        self.allowed_lateness_us = allowed_lateness_us
        self.compression = compression
        horizon_ms = (allowed_lateness_us + 2 * WINDOW_US) // 1000
        self.deduper = BatchDeduper(attempt_window_ms, horizon_ms)
        self.max_ts_us = _MIN_TS
        self.slots: dict[SeriesKey, int] = {}
        self.keys: list[SeriesKey | None] = []
        self.free: list[int] = []
        self.digests: list[TDigest | tuple[float, ...] | None] = []
        self._alloc(1024)
        self.pending_slots: list[Int64s] = []
        self.pending_values: list[Floats] = []
        self.duplicates = 0
        self.late = 0

    # -- storage ---------------------------------------------------------------------------
    def _alloc(self, capacity: int) -> None:
        """Grow every per-slot array to ``capacity`` (doubling keeps this amortised)."""
        old = len(self.keys)
        grow = capacity - old
        for name, (dtype, fill) in _COLUMNS.items():
            extra: npt.NDArray[np.generic] = np.full(grow, fill, dtype=dtype)
            setattr(self, name, extra if old == 0 else np.concatenate([getattr(self, name), extra]))
        self.keys.extend([None] * grow)
        self.digests.extend([None] * grow)
        self.free.extend(range(capacity - 1, old - 1, -1))

    def _slot_for(self, key: SeriesKey) -> int:
        slot = self.slots.get(key)
        if slot is None:
            if not self.free:
                self._alloc(len(self.keys) * 2)
            slot = self.free.pop()
            self.slots[key] = slot
            self.keys[slot] = key
            self.minute[slot] = key[0]
            self.live[slot] = True
        return slot

    def _release(self, slots: Int64s) -> None:
        for slot in slots.tolist():
            key = self.keys[slot]
            if key is not None:
                del self.slots[key]
            self.keys[slot] = None
            self.digests[slot] = None
        for name, (_, fill) in _COLUMNS.items():
            getattr(self, name)[slots] = fill
        self.free.extend(slots.tolist())

    @property
    def open_windows(self) -> int:
        return len(self.slots)

    @property
    def watermark_us(self) -> int:
        return self.max_ts_us - self.allowed_lateness_us

    # -- ingest ----------------------------------------------------------------------------
    def add(self, batch: ShardBatch) -> LateRows | None:
        """Fold one poll into the windows; returns the rows that came too late, if any."""
        if len(batch) == 0:
            return None
        cols = batch.columns
        kept = ~self.deduper.duplicates(batch.batch_ids, batch.produced_ms)
        self.duplicates += int(len(kept) - kept.sum())
        keep: Int64s = np.flatnonzero(kept)
        ts = cols.timestamp_us[keep]
        if len(ts) == 0:
            return None
        project = np.asarray(cols.project_id, dtype=object)[keep]
        api_key = np.asarray(cols.api_key, dtype=object)[keep]
        minute = ts - np.mod(ts, WINDOW_US)
        running = np.maximum.accumulate(np.maximum(ts, self.max_ts_us))
        self.max_ts_us = int(running[-1])
        late = minute + WINDOW_US <= running - self.allowed_lateness_us
        late_rows = None
        if late.any():
            self.late += int(late.sum())
            late_rows = LateRows(
                topic=batch.topic,
                partition=batch.partition,
                offset=batch.offsets[keep][late],
                project_id=project[late].tolist(),
                api_key=api_key[late].tolist(),
                bucket_us=minute[late],
            )
            on_time = ~late
            if not on_time.any():
                return late_rows
            keep = keep[on_time]
            project, api_key, minute = project[on_time], api_key[on_time], minute[on_time]
        self._fold(cols, keep, project, api_key, minute)
        return late_rows

    def _fold(
        self,
        cols: MetricColumns,
        keep: Int64s,
        project: Objects,
        api_key: Objects,
        minute: Int64s,
    ) -> None:
        endpoint = np.asarray(cols.endpoint, dtype=object)[keep]
        method = np.asarray(cols.method, dtype=object)[keep]
        status = cols.status_code[keep].astype(np.int64)
        status_class = status // 100
        latency = cols.latency_ms[keep].astype(np.float64)
        p_code, p_vals = _codes(project)
        a_code, a_vals = _codes(api_key)
        e_code, e_vals = _codes(endpoint)
        m_code, m_vals = _codes(method)
        minute_vals, minute_code = np.unique(minute, return_inverse=True)
        group = _combine(_combine(_combine(_combine(p_code, a_code), e_code), m_code),
                         status_class)
        group = _combine(group, minute_code.astype(np.int64))
        n_groups = int(group.max()) + 1
        _, first = np.unique(group, return_index=True)
        # One dictionary look-up per distinct (series, minute) of the poll.
        group_slot = np.fromiter(
            (
                self._slot_for((
                    int(minute_vals[mc]), p_vals[p], a_vals[a], e_vals[e], m_vals[m], int(sc),
                ))
                for p, a, e, m, sc, mc in zip(
                    p_code[first].tolist(), a_code[first].tolist(), e_code[first].tolist(),
                    m_code[first].tolist(), status_class[first].tolist(),
                    minute_code[first].tolist(), strict=True,
                )
            ),
            np.int64,
            n_groups,
        )
        row_slot = group_slot[group]
        self.count[group_slot] += np.bincount(group, minlength=n_groups)
        self.errors[group_slot] += np.bincount(group, status >= 400, n_groups).astype(np.int64)
        self.server_errors[group_slot] += np.bincount(group, status >= 500, n_groups).astype(
            np.int64
        )
        self.bytes_in[group_slot] += np.bincount(
            group, cols.request_bytes[keep], n_groups
        ).astype(np.int64)
        self.bytes_out[group_slot] += np.bincount(
            group, cols.response_bytes[keep], n_groups
        ).astype(np.int64)
        self.lat_sum[group_slot] += np.bincount(group, latency, n_groups)
        np.minimum.at(self.lat_min, row_slot, latency)
        np.maximum.at(self.lat_max, row_slot, latency)
        self.changed[group_slot] = True
        self.pending_slots.append(row_slot)
        self.pending_values.append(latency)

    # -- emit ------------------------------------------------------------------------------
    def _fold_digests(self) -> None:
        """Fold pending latencies into each changed window's sketch, one slot at a time.

        Windows with few values (most of them, with many series) keep the raw values as a
        sorted tuple: exact, cheap to pickle and to print; past ``RAW_LIMIT`` values they
        become a fastdigest.
        """
        if not self.pending_slots:
            return
        slots = np.concatenate(self.pending_slots)
        values = np.concatenate(self.pending_values)
        self.pending_slots, self.pending_values = [], []
        order = np.lexsort((values, slots))
        slots, values = slots[order], values[order]
        unique, starts = np.unique(slots, return_index=True)
        ends = np.append(starts[1:], len(slots))
        as_list = values.tolist()
        digests = self.digests
        compression = self.compression
        for slot, a, b in zip(unique.tolist(), starts.tolist(), ends.tolist(), strict=True):
            current = digests[slot]
            if isinstance(current, TDigest):
                digests[slot] = tdigest.fold(current, values[a:b], compression)
                continue
            merged = tuple(as_list[a:b]) if current is None else tuple(
                sorted(current + tuple(as_list[a:b])))
            if len(merged) <= tdigest.RAW_LIMIT:
                digests[slot] = merged
            else:
                digests[slot] = tdigest.build(np.asarray(merged, dtype=np.float64), compression)

    def emit(self) -> MetricRows | None:
        """Full state of the windows changed since the last call; closed windows forgotten."""
        self._fold_digests()
        changed = np.flatnonzero(self.changed)
        rows = self._rows(changed) if len(changed) else None
        self.changed[changed] = False
        closed = np.flatnonzero(self.live & (self.minute + WINDOW_US <= self.watermark_us))
        self._release(closed)
        self.deduper.forget_old()
        return rows

    def _rows(self, slots: Int64s) -> MetricRows:
        keys = [self.keys[s] for s in slots.tolist()]
        digests = [self.digests[s] for s in slots.tolist()]
        return MetricRows(
            bucket_us=self.minute[slots].copy(),
            project_id=[k[1] for k in keys if k is not None],
            api_key=[k[2] for k in keys if k is not None],
            endpoint=[k[3] for k in keys if k is not None],
            method=[k[4] for k in keys if k is not None],
            status_class=np.asarray([k[5] for k in keys if k is not None], dtype=np.int16),
            request_count=self.count[slots].copy(),
            error_count=self.errors[slots].copy(),
            server_error_count=self.server_errors[slots].copy(),
            latency_sum=self.lat_sum[slots].copy(),
            latency_min=self.lat_min[slots].copy(),
            latency_max=self.lat_max[slots].copy(),
            bytes_in=self.bytes_in[slots].copy(),
            bytes_out=self.bytes_out[slots].copy(),
            digest=[tdigest.to_pg_text(d, self.compression) for d in digests],
        )
