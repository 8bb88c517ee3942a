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
- a poll is grouped in C (pyarrow builds one key string per row and hashes it); Python
  touches each *distinct window* of the poll once (a dict look-up for its slot), never
  each event. Counts, sums, min and max are folded in with bincount / ufunc.at.
- latencies wait in a pending buffer and reach the windows' sketches only when they are
  emitted (``sketches.py``); ``emit()`` returns the *full* state of every window that
  changed since the previous emission (the sink replaces rows, never adds), then forgets
  closed windows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from schemas.codec import MetricColumns
from speed_layer.dedupe import RETRY_DEDUPE_HORIZON_MS, BatchDeduper
from speed_layer.items import WINDOW_US, Floats, Int64s, LateRows, MetricRows, ShardBatch
from speed_layer.sketches import DigestParts, Sketches

_MIN_TS = int(np.iinfo(np.int64).min // 2)
# Per-slot arrays: name → (dtype, value of an empty slot).
_COLUMNS: dict[str, tuple[type, object]] = {
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
    "project": (np.object_, None),
    "api_key": (np.object_, None),
    "endpoint": (np.object_, None),
    "method": (np.object_, None),
}


def window_keys(minute: pa.Array, status_class: pa.Array, method: pa.Array,
                project: pa.Array, api_key: pa.Array, endpoint: pa.Array) -> pa.Array:
    """One string per row naming its (minute, series), built in C++.

    ``minute|status|method|len(project):project len(api_key):api_key endpoint``: the
    lengths make the key unambiguous whatever characters the free-text parts hold.
    """
    sep = "\x1f"
    return pc.binary_join_element_wise(
        pc.cast(minute, pa.string()), pc.cast(status_class, pa.string()), method,
        pc.binary_join_element_wise(
            pc.cast(pc.utf8_length(project), pa.string()), project,
            pc.cast(pc.utf8_length(api_key), pa.string()), api_key, endpoint, ":"),
        sep,
    )


class ShardWindows:
    """All open minute windows of one shard. Pickled whole as the Bytewax snapshot."""

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
    project: npt.NDArray[np.object_]
    api_key: npt.NDArray[np.object_]
    endpoint: npt.NDArray[np.object_]
    method: npt.NDArray[np.object_]

    def __init__(
        self, *, allowed_lateness_us: int, compression: int, attempt_window_ms: int,
        dedupe_horizon_ms: int = RETRY_DEDUPE_HORIZON_MS,
    ) -> None:
        self.allowed_lateness_us = allowed_lateness_us
        self.compression = compression
        horizon_ms = max(dedupe_horizon_ms, (allowed_lateness_us + 2 * WINDOW_US) // 1000)
        self.deduper = BatchDeduper(attempt_window_ms, horizon_ms)
        self.max_ts_us = _MIN_TS
        self.slots: dict[str, int] = {}
        self.keys: list[str | None] = []
        self.free: list[int] = []
        self.sketches = Sketches(compression)
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
        self.sketches.grow(capacity)
        self.free.extend(range(capacity - 1, old - 1, -1))

    def _take_slots(self, n: int) -> Int64s:
        while len(self.free) < n:
            self._alloc(len(self.keys) * 2)
        taken = self.free[len(self.free) - n:]
        del self.free[len(self.free) - n:]
        return np.asarray(taken, dtype=np.int64)

    def _release(self, slots: Int64s) -> None:
        if not len(slots):
            return
        keys, table = self.keys, self.slots
        for slot in slots.tolist():  # one step per closed window, never per event
            key = keys[slot]
            if key is not None:
                del table[key]
            keys[slot] = None
        for name, (_, fill) in _COLUMNS.items():
            getattr(self, name)[slots] = fill
        self.sketches.release(slots)
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
        kept = ~self.deduper.duplicates(batch.batch_ids, cols.batch_index, batch.produced_ms)
        n_kept = int(kept.sum())
        self.duplicates += len(kept) - n_kept
        if n_kept == 0:
            return None
        keep: Int64s | None = None if n_kept == len(kept) else np.flatnonzero(kept)
        ts = cols.timestamp_us if keep is None else cols.timestamp_us[keep]
        minute = ts - np.mod(ts, WINDOW_US)
        running = np.maximum.accumulate(np.maximum(ts, self.max_ts_us))
        self.max_ts_us = int(running[-1])
        late = minute + WINDOW_US <= running - self.allowed_lateness_us
        late_rows = None
        if late.any():
            rows = np.arange(len(kept)) if keep is None else keep
            late_at = rows[late]
            self.late += len(late_at)
            late_list = late_at.tolist()
            late_rows = LateRows(
                topic=batch.topic,
                partition=batch.partition,
                offset=batch.offsets[late_at],
                project_id=[cols.project_id[i] for i in late_list],  # late rows are rare
                api_key=[cols.api_key[i] for i in late_list],
                bucket_us=minute[late],
            )
            on_time = ~late
            if not on_time.any():
                return late_rows
            keep, minute = rows[on_time], minute[on_time]
        self._fold(cols, keep, minute)
        return late_rows

    def _fold(self, cols: MetricColumns, keep: Int64s | None, minute: Int64s) -> None:
        def strings(values: list[str]) -> pa.Array:
            arr = pa.array(values, type=pa.string())
            return arr if keep is None else arr.take(keep)

        def pick(values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
            return values if keep is None else values[keep]

        project, api_key = strings(cols.project_id), strings(cols.api_key)
        endpoint, method = strings(cols.endpoint), strings(cols.method)
        status = pick(cols.status_code).astype(np.int64)
        status_class = (status // 100).astype(np.int16)
        latency = pick(cols.latency_ms).astype(np.float64)
        encoded = window_keys(pa.array(minute), pa.array(status_class), method, project,
                              api_key, endpoint).dictionary_encode()
        group = encoded.indices.to_numpy().astype(np.int64)
        distinct: list[str] = encoded.dictionary.to_pylist()
        n_groups = len(distinct)
        get = self.slots.get
        group_slot = np.asarray([get(k, -1) for k in distinct], dtype=np.int64)
        new = np.flatnonzero(group_slot < 0)
        if len(new):
            first = np.full(n_groups, len(group), dtype=np.int64)
            np.minimum.at(first, group, np.arange(len(group), dtype=np.int64))
            self._open(new, first[new], group_slot, distinct, minute, status_class,
                       (project, api_key, endpoint, method))
        row_slot = group_slot[group]
        self.count[group_slot] += np.bincount(group, minlength=n_groups)
        self.errors[group_slot] += np.bincount(group, status >= 400, n_groups).astype(np.int64)
        self.server_errors[group_slot] += np.bincount(group, status >= 500, n_groups).astype(
            np.int64
        )
        self.bytes_in[group_slot] += np.bincount(
            group, pick(cols.request_bytes), n_groups
        ).astype(np.int64)
        self.bytes_out[group_slot] += np.bincount(
            group, pick(cols.response_bytes), n_groups
        ).astype(np.int64)
        self.lat_sum[group_slot] += np.bincount(group, latency, n_groups)
        low = np.full(n_groups, np.inf)
        high = np.full(n_groups, -np.inf)
        np.minimum.at(low, group, latency)
        np.maximum.at(high, group, latency)
        self.lat_min[group_slot] = np.minimum(self.lat_min[group_slot], low)
        self.lat_max[group_slot] = np.maximum(self.lat_max[group_slot], high)
        self.changed[group_slot] = True
        self.pending_slots.append(row_slot)
        self.pending_values.append(latency)

    def _open(self, new: Int64s, first_rows: Int64s, group_slot: Int64s, distinct: list[str],
              minute: Int64s, status_class: npt.NDArray[np.int16],
              strings: tuple[pa.Array, pa.Array, pa.Array, pa.Array]) -> None:
        """Give slots to the windows first seen in this poll (one step per new window)."""
        slots = self._take_slots(len(new))
        group_slot[new] = slots
        new_keys = [distinct[g] for g in new.tolist()]
        slot_list = slots.tolist()
        self.slots.update(zip(new_keys, slot_list, strict=True))
        keys = self.keys
        for key, slot in zip(new_keys, slot_list, strict=True):
            keys[slot] = key
        at = pa.array(first_rows)
        self.minute[slots] = minute[first_rows]
        self.status_class[slots] = status_class[first_rows]
        for name, values in zip(("project", "api_key", "endpoint", "method"), strings,
                                strict=True):
            getattr(self, name)[slots] = values.take(at).to_numpy(zero_copy_only=False)
        self.live[slots] = True

    # -- emit ------------------------------------------------------------------------------
    def emit(self) -> MetricRows | None:
        """Full state of the windows changed since the last call; closed windows forgotten."""
        rows = None
        changed = np.flatnonzero(self.changed)
        if len(changed):
            slots = np.concatenate(self.pending_slots)
            values = np.concatenate(self.pending_values)
            self.pending_slots, self.pending_values = [], []
            order, digests = self.sketches.fold_and_collect(slots, values, changed, self.count)
            rows = self._rows(changed[order], digests)
            self.changed[changed] = False
        closed = np.flatnonzero(self.live & (self.minute + WINDOW_US <= self.watermark_us))
        self._release(closed)
        self.deduper.forget_old()
        return rows

    def _rows(self, slots: Int64s, digests: DigestParts) -> MetricRows:
        return MetricRows(
            bucket_us=self.minute[slots],
            project_id=self.project[slots],
            api_key=self.api_key[slots],
            endpoint=self.endpoint[slots],
            method=self.method[slots],
            status_class=self.status_class[slots],
            request_count=self.count[slots],
            error_count=self.errors[slots],
            server_error_count=self.server_errors[slots],
            latency_sum=self.lat_sum[slots],
            latency_min=self.lat_min[slots],
            latency_max=self.lat_max[slots],
            bytes_in=self.bytes_in[slots],
            bytes_out=self.bytes_out[slots],
            digest=digests,
        )
