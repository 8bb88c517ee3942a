"""Latency sketches of a shard's windows, folded and printed in bulk at emission time.

A window with at most ``RAW_LIMIT`` values keeps them raw (exact; printed as centroids
of weight 1) in one flat store shared by all windows of the shard: two numpy arrays
(slot, value), so neither folding nor printing touches a value in Python. Past the limit
a window gets a fastdigest (compression = max centroids), built from its values in one
call; those windows are few (at most one per ``RAW_LIMIT`` events) and are the only ones
handled one by one. An emission carries its windows' centroids as flat arrays
(``DigestParts``); their PostgreSQL ``tdigest`` text is built later, by the writer
thread, with Arrow compute kernels (shortest round-trip float formatting, list joins)
that run without the GIL, so the dataflow thread does not pay for the formatting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from fastdigest import TDigest

from speed_layer import digest as tdigest
from speed_layer.items import Floats, Int64s, digest_compression

RAW_LIMIT = tdigest.RAW_LIMIT


def pg_texts(means: Floats, counts: Int64s, sizes: Int64s, compression: int) -> pa.Array:
    """``tdigest`` text of many sketches: centroids concatenated, ``sizes`` per sketch.

    Centroids must be sorted by mean within each sketch and counts be positive integers.
    """
    if not len(sizes):
        return pa.array([], pa.string())
    pairs = pc.binary_join_element_wise(
        "(", pc.cast(pa.array(means), pa.string()), ", ",
        pc.cast(pa.array(counts), pa.string()), ")", "")
    offsets = np.zeros(len(sizes) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    bodies = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pairs), " ")
    starts = offsets[:-1].astype(np.int64)
    totals = np.add.reduceat(counts, starts) if len(counts) else np.zeros(0, np.int64)
    return pc.binary_join_element_wise(
        "flags 1 count ", pc.cast(pa.array(totals), pa.string()),
        f" compression {compression} centroids ", pc.cast(pa.array(sizes), pa.string()),
        " ", bodies, "")


def digest_texts(means: pa.ListArray, counts: pa.ListArray, compression: int) -> pa.Array:
    """``tdigest`` text of each row of an emission's ``digest_means``/``digest_counts``."""
    sizes = pc.list_value_length(means).to_numpy(zero_copy_only=False).astype(np.int64)
    return pg_texts(means.flatten().to_numpy(zero_copy_only=False),
                    counts.flatten().to_numpy(zero_copy_only=False), sizes, compression)


def emitted_texts(rows: pa.RecordBatch) -> pa.Array:
    """``tdigest`` text of each row of an emission (``items.METRIC_ROWS_SCHEMA``)."""
    return digest_texts(rows.column("digest_means"), rows.column("digest_counts"),
                        digest_compression(rows))


@dataclass(frozen=True, slots=True)
class DigestParts:
    """Sketches of some windows as centroids, ``sizes[i]`` of them for window i.

    Centroids are sorted by mean within each window; counts are positive integers.
    """

    means: Floats
    counts: Int64s
    sizes: Int64s
    compression: int

    def __len__(self) -> int:
        return len(self.sizes)

    def texts(self) -> pa.Array:
        """The ``tdigest`` text of every window, in order."""
        return pg_texts(self.means, self.counts, self.sizes, self.compression)

    @staticmethod
    def concat(parts: list[DigestParts], compression: int) -> DigestParts:
        return DigestParts(np.concatenate([p.means for p in parts]),
                           np.concatenate([p.counts for p in parts]),
                           np.concatenate([p.sizes for p in parts]), compression)


def _empty_parts(compression: int) -> DigestParts:
    return DigestParts(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), compression)


def _segments(sorted_keys: Int64s) -> tuple[Int64s, Int64s, Int64s]:
    """Distinct values of a sorted array, where each run starts and how long it is."""
    if not len(sorted_keys):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(sorted_keys)])
    return sorted_keys[starts], starts, sizes


class Sketches:
    """Per-slot sketches: raw values in a shared store, or a fastdigest past the limit."""

    def __init__(self, compression: int) -> None:
        self.compression = compression
        self.digests: list[TDigest | None] = []
        self.heavy: npt.NDArray[np.bool_] = np.zeros(0, dtype=np.bool_)
        self.raw_slot: Int64s = np.zeros(0, dtype=np.int64)
        self.raw_value: Floats = np.zeros(0, dtype=np.float64)

    def grow(self, capacity: int) -> None:
        extra = capacity - len(self.digests)
        self.digests.extend([None] * extra)
        self.heavy = np.concatenate([self.heavy, np.zeros(extra, dtype=np.bool_)])

    def _mask(self, slots: Int64s) -> npt.NDArray[np.bool_]:
        mask = np.zeros(len(self.digests), dtype=np.bool_)
        mask[slots] = True
        return mask

    def release(self, slots: Int64s) -> None:
        """Forget the sketches of closed windows."""
        for slot in slots[self.heavy[slots]].tolist():
            self.digests[slot] = None
        self.heavy[slots] = False
        keep = ~self._mask(slots)[self.raw_slot]
        if not keep.all():
            self.raw_slot, self.raw_value = self.raw_slot[keep], self.raw_value[keep]

    def fold_and_collect(self, slots: Int64s, values: Floats, changed: Int64s,
                         count: Int64s) -> tuple[Int64s, DigestParts]:
        """Add pending ``values`` (of ``slots``) and collect every ``changed`` window.

        ``changed`` is sorted; ``count`` is the per-slot value count *including* the
        pending values. Returns the positions in ``changed`` in the order of the parts.
        """
        heavy_now = count[changed] > RAW_LIMIT
        to_digest = changed[heavy_now]
        light = changed[~heavy_now]
        in_digest = self._mask(to_digest)[slots]
        self._fold_heavy(to_digest, slots[in_digest], values[in_digest])
        # Light windows: their new values join the raw store.
        stay = ~in_digest
        if stay.any():
            self.raw_slot = np.concatenate([self.raw_slot, slots[stay]])
            self.raw_value = np.concatenate([self.raw_value, values[stay]])
        parts = DigestParts.concat([self._raw_parts(light), self._digest_parts(to_digest)],
                                   self.compression)
        order_slots = np.concatenate([light, to_digest])
        return np.searchsorted(changed, order_slots), parts

    def _fold_heavy(self, targets: Int64s, slots: Int64s, values: Floats) -> None:
        if not len(targets):
            return
        convert = targets[~self.heavy[targets]]
        if len(convert):  # their raw values move into a fresh digest
            moving = self._mask(convert)[self.raw_slot]
            slots = np.concatenate([slots, self.raw_slot[moving]])
            values = np.concatenate([values, self.raw_value[moving]])
            self.raw_slot, self.raw_value = self.raw_slot[~moving], self.raw_value[~moving]
            self.heavy[convert] = True
        order = np.argsort(slots, kind="stable")
        slots, values = slots[order], values[order]
        unique, starts, sizes = _segments(slots)
        digests, compression = self.digests, self.compression
        for slot, a, n in zip(unique.tolist(), starts.tolist(), sizes.tolist(), strict=True):
            digests[slot] = tdigest.fold(digests[slot], values[a:a + n], compression)

    def _raw_parts(self, light: Int64s) -> DigestParts:
        if not len(light):
            return _empty_parts(self.compression)
        pick = self._mask(light)[self.raw_slot]
        slots, values = self.raw_slot[pick], self.raw_value[pick]
        order = np.lexsort((values, slots))
        _, _, sizes = _segments(slots[order])
        return DigestParts(values[order], np.ones(len(values), dtype=np.int64), sizes,
                           self.compression)

    def _digest_parts(self, heavy: Int64s) -> DigestParts:
        if not len(heavy):
            return _empty_parts(self.compression)
        digests = self.digests
        parts = [np.asarray(cast(TDigest, digests[s]).centroids, dtype=np.float64).reshape(-1, 2)
                 for s in heavy.tolist()]
        sizes = np.asarray([len(p) for p in parts], dtype=np.int64)
        flat = np.concatenate(parts)
        owner = np.repeat(np.arange(len(parts)), sizes)
        order = np.lexsort((flat[:, 0], owner))
        means, weights = flat[order, 0], flat[order, 1]
        # Integer counts by rounding each sketch's running sum: totals stay exact.
        cum = np.cumsum(weights)
        base = np.repeat(np.r_[0.0, cum[:-1]][np.r_[0, np.cumsum(sizes)[:-1]]], sizes)
        rounded = np.rint(cum - base).astype(np.int64)
        first = np.r_[0, np.cumsum(sizes)[:-1]]
        counts = np.diff(rounded, prepend=0)
        counts[first] = rounded[first]
        keep = counts > 0
        return DigestParts(means[keep], counts[keep],
                           np.bincount(owner[keep], minlength=len(parts)).astype(np.int64),
                           self.compression)
