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
- a window is named by integers (``interning``): the shard's codes of the poll's
  dictionary-encoded strings, chained into a series id, packed with the minute into one
  int64 and found in a sorted key array. A poll is grouped by sorting those keys once;
  counts, sums, min and max are folded in with ``reduceat``. No Python step per event or
  per window.
- latencies wait in a pending buffer and reach the windows' sketches only when they are
  emitted (``sketches.py``); ``emit()`` returns the *full* state of every window that
  changed since the previous emission (the sink replaces rows, never adds) as one Arrow
  record batch, then forgets closed windows.

The state is saved and restored as explicit arrays (``snapshot.py``); the settings
(lateness, digest compression, dedupe horizon) are not part of it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from schemas.records import MetricArrays
from speed_layer.dedupe import RETRY_DEDUPE_HORIZON_MS, BatchDeduper
from speed_layer.interning import ID_LIMIT, KeyMap, PairIds, StringTable
from speed_layer.items import (
    LATE_ROWS_SCHEMA,
    WINDOW_US,
    Floats,
    Int64s,
    LateRows,
    MetricRows,
    ShardBatch,
    metric_rows_schema,
)
from speed_layer.sketches import DigestParts, Sketches

MIN_TS = int(np.iinfo(np.int64).min // 2)
STRING_COLUMNS = ("project_id", "api_key", "endpoint", "method")
# Per-slot arrays: name → (dtype, value of an empty slot). ``*_code`` index the shard's
# string tables.
COLUMNS: dict[str, tuple[type, object]] = {
    "minute": (np.int64, 0),
    "status_class": (np.int16, 0),
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
    "window_key": (np.int64, -1),
    **{f"{name}_code": (np.int64, -1) for name in STRING_COLUMNS},
}
_COMPACT_MIN = 1 << 16


def _first_rows(keys: Int64s) -> tuple[Int64s, Int64s, Int64s, Int64s]:
    """Sort ``keys``: (order, run starts in sorted order, distinct keys, run lengths)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    return order, starts, ordered[starts], sizes


class ShardWindows:
    """All open minute windows of one shard; saved by ``snapshot.dump_windows``."""

    minute: Int64s
    status_class: npt.NDArray[np.int16]
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
    window_key: Int64s
    project_id_code: Int64s
    api_key_code: Int64s
    endpoint_code: Int64s
    method_code: Int64s

    def __init__(self, *, allowed_lateness_us: int, compression: int,
                 dedupe_horizon_ms: int = RETRY_DEDUPE_HORIZON_MS) -> None:
        self.allowed_lateness_us = allowed_lateness_us
        self.compression = compression
        horizon_ms = max(dedupe_horizon_ms, (allowed_lateness_us + 2 * WINDOW_US) // 1000)
        self.deduper = BatchDeduper(horizon_ms)
        self.max_ts_us = MIN_TS
        self.capacity = 0
        self.free: Int64s = np.zeros(0, np.int64)
        self.sketches = Sketches(compression)
        self._reset_names()
        self._alloc(1024)
        self.pending_slots: list[Int64s] = []
        self.pending_values: list[Floats] = []
        self.duplicates = 0
        self.late = 0

    def _reset_names(self) -> None:
        self.strings = {name: StringTable() for name in STRING_COLUMNS}
        self.consumers, self.endpoints, self.series = PairIds(), PairIds(), PairIds()
        self.windows = KeyMap()  # window key → slot

    # -- storage ---------------------------------------------------------------------------
    def _alloc(self, capacity: int) -> None:
        """Grow every per-slot array to ``capacity`` (doubling keeps this amortised)."""
        old = self.capacity
        grow = capacity - old
        for name, (dtype, fill) in COLUMNS.items():
            extra: npt.NDArray[np.generic] = np.full(grow, fill, dtype=dtype)
            setattr(self, name, extra if old == 0 else np.concatenate([getattr(self, name), extra]))
        self.sketches.grow(capacity)
        self.free = np.concatenate([self.free, np.arange(capacity - 1, old - 1, -1)])
        self.capacity = capacity

    def _take_slots(self, n: int) -> Int64s:
        while len(self.free) < n:
            self._alloc(self.capacity * 2)
        taken = self.free[len(self.free) - n:]
        self.free = self.free[:len(self.free) - n]
        return taken

    def _release(self, slots: Int64s) -> None:
        if not len(slots):
            return
        self.windows.drop(self.window_key[slots])
        for name, (_, fill) in COLUMNS.items():
            getattr(self, name)[slots] = fill
        self.sketches.release(slots)
        self.free = np.concatenate([self.free, slots])

    @property
    def open_windows(self) -> int:
        return len(self.windows)

    @property
    def watermark_us(self) -> int:
        return self.max_ts_us - self.allowed_lateness_us

    # -- naming ----------------------------------------------------------------------------
    def _window_keys(self, codes: dict[str, Int64s], status_class: Int64s,
                     minute: Int64s) -> Int64s:
        """One int64 per row naming its (minute, series)."""
        consumer = self.consumers.ids(codes["project_id"], codes["api_key"])
        endpoint = self.endpoints.ids(consumer, codes["endpoint"])
        series = self.series.ids(endpoint, (codes["method"] << 4) | status_class)
        out: Int64s = ((minute // WINDOW_US) << 31) | series
        return out

    def _compact(self) -> None:
        """Rebuild names from the live windows only (ids of closed ones are garbage)."""
        slots = np.flatnonzero(self.live)
        strings = {name: self.strings[name].take(getattr(self, f"{name}_code")[slots])
                   for name in STRING_COLUMNS}
        self._reset_names()
        self._name_slots(slots, strings)

    def _name_slots(self, slots: Int64s, strings: dict[str, pa.Array]) -> None:
        """Give ``slots`` (minute and status class set) their codes and window keys."""
        codes = {name: self.strings[name].codes(strings[name]) for name in STRING_COLUMNS}
        for name, values in codes.items():
            getattr(self, f"{name}_code")[slots] = values
        keys = self._window_keys(codes, self.status_class[slots].astype(np.int64),
                                 self.minute[slots])
        self.window_key[slots] = keys
        self.windows.put(keys, slots)

    def _names_too_big(self) -> bool:
        biggest = max(len(self.series), len(self.endpoints), len(self.consumers),
                      *(len(t) for t in self.strings.values()))
        return biggest > max(_COMPACT_MIN, 4 * len(self.windows)) or biggest >= ID_LIMIT // 2

    # -- ingest ----------------------------------------------------------------------------
    def add(self, batch: ShardBatch) -> LateRows | None:
        """Fold one poll into the windows; returns the rows that came too late, if any."""
        if len(batch) == 0:
            return None
        cols = batch.columns
        kept = ~self.deduper.duplicates(cols.batch_id, cols.batch_index, batch.produced_ms)
        n_kept = int(kept.sum())
        self.duplicates += len(kept) - n_kept
        if n_kept == 0:
            return None
        rows = np.arange(len(kept)) if n_kept == len(kept) else np.flatnonzero(kept)
        ts = cols.timestamp_us[rows]
        minute = ts - np.mod(ts, WINDOW_US)
        running = np.maximum.accumulate(np.maximum(ts, self.max_ts_us))
        self.max_ts_us = int(running[-1])
        late = minute + WINDOW_US <= running - self.allowed_lateness_us
        late_rows = None
        if late.any():
            late_at = rows[late]
            self.late += len(late_at)
            at = pa.array(late_at)
            late_rows = LateRows(topic=batch.topic, partition=batch.partition,
                                 rows=pa.record_batch([
                                     pa.array(batch.offsets[late_at]),
                                     cols.project_id.take(at).cast(pa.string()),
                                     cols.api_key.take(at).cast(pa.string()),
                                     pa.array(minute[late]),
                                 ], schema=LATE_ROWS_SCHEMA))
            on_time = ~late
            if not on_time.any():
                return late_rows
            rows, minute = rows[on_time], minute[on_time]
        self._fold(cols, rows, minute)
        return late_rows

    def _fold(self, cols: MetricArrays, rows: Int64s, minute: Int64s) -> None:
        codes = {name: self.strings[name].codes(getattr(cols, name))[rows]
                 for name in STRING_COLUMNS}
        status = cols.status_code[rows].astype(np.int64)
        status_class = status // 100
        keys = self._window_keys(codes, status_class, minute)
        order, starts, distinct, sizes = _first_rows(keys)
        slot = self.windows.get(distinct)
        new = np.flatnonzero(slot < 0)
        if len(new):
            first = order[starts[new]]
            taken = self._take_slots(len(new))
            slot[new] = taken
            self.windows.put(distinct[new], taken)
            self.window_key[taken] = distinct[new]
            self.minute[taken] = minute[first]
            self.status_class[taken] = status_class[first]
            for name, values in codes.items():
                getattr(self, f"{name}_code")[taken] = values[first]
            self.live[taken] = True

        def total(values: Int64s) -> Int64s:
            out: Int64s = np.add.reduceat(values[order], starts)
            return out

        latency = cols.latency_ms[rows].astype(np.float64)[order]
        self.count[slot] += sizes
        self.errors[slot] += total((status >= 400).astype(np.int64))
        self.server_errors[slot] += total((status >= 500).astype(np.int64))
        self.bytes_in[slot] += total(cols.request_bytes[rows].astype(np.int64))
        self.bytes_out[slot] += total(cols.response_bytes[rows].astype(np.int64))
        self.lat_sum[slot] += np.add.reduceat(latency, starts)
        self.lat_min[slot] = np.minimum(self.lat_min[slot], np.minimum.reduceat(latency, starts))
        self.lat_max[slot] = np.maximum(self.lat_max[slot], np.maximum.reduceat(latency, starts))
        self.changed[slot] = True
        self.pending_slots.append(np.repeat(slot, sizes))
        self.pending_values.append(latency)

    # -- emit ------------------------------------------------------------------------------
    def emit(self) -> MetricRows | None:
        """Full state of the windows changed since the last call; closed windows forgotten."""
        rows = None
        changed = np.flatnonzero(self.changed)
        if len(changed):
            slots = np.concatenate(self.pending_slots) if self.pending_slots else np.zeros(
                0, np.int64)
            values = np.concatenate(self.pending_values) if self.pending_values else np.zeros(0)
            self.pending_slots, self.pending_values = [], []
            order, digests = self.sketches.fold_and_collect(slots, values, changed, self.count)
            rows = self._rows(changed[order], digests)
            self.changed[changed] = False
        closed = np.flatnonzero(self.live & (self.minute + WINDOW_US <= self.watermark_us))
        self._release(closed)
        if self._names_too_big():
            self._compact()
        self.deduper.forget_old()
        return rows

    def _rows(self, slots: Int64s, digests: DigestParts) -> MetricRows:
        def strings(name: str) -> pa.Array:
            return self.strings[name].take(getattr(self, f"{name}_code")[slots])

        offsets = pa.array(np.r_[0, np.cumsum(digests.sizes)].astype(np.int32))
        return pa.record_batch([
            pa.array(self.minute[slots]),
            strings("project_id"), strings("api_key"), strings("endpoint"), strings("method"),
            pa.array(self.status_class[slots]),
            pa.array(self.count[slots]),
            pa.array(self.errors[slots]),
            pa.array(self.server_errors[slots]),
            pa.array(self.lat_sum[slots]),
            pa.array(self.lat_min[slots]),
            pa.array(self.lat_max[slots]),
            pa.array(self.bytes_in[slots]),
            pa.array(self.bytes_out[slots]),
            pa.ListArray.from_arrays(offsets, pa.array(digests.means)),
            pa.ListArray.from_arrays(offsets, pa.array(digests.counts)),
        ], schema=metric_rows_schema(self.compression))
