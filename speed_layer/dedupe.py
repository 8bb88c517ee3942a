"""Retried gateway batches counted once: what each batch id of a partition has delivered.

A retried HTTP batch is published again with the same batch id. Every event of a format v2
record carries ``(batch_id, batch_index)``, its position in the batch, so an event is
recognised whatever the attempt or record: per batch id the shard keeps a bitmap of the
positions it has counted, and an event whose position is already set is a duplicate. This is exact
even when an attempt published only part of the batch before failing (its retry then adds
exactly the missing events) and when attempts interleave with other batches or polls.

Ids are forgotten once the partition's newest record is ``horizon_ms`` younger than their
first record, so memory stays bounded (a bitmap is one byte per position: ~1 KB for a
batch of 1,000 events). The horizon is at least ``RETRY_DEDUPE_HORIZON_MS``, the agent's
longest retry plus publishing slack (``schemas.retries``): an id forgotten sooner would let
a late retry count twice.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from schemas.retries import RETRY_DEDUPE_HORIZON_S
from speed_layer.items import Int64s

MAX_BATCH_INDEX = 1_000_000
"""Positions at or above this are not tracked (no bitmap grows without bound): counted."""

RETRY_DEDUPE_HORIZON_MS = int(RETRY_DEDUPE_HORIZON_S * 1000)
Bools = npt.NDArray[np.bool_]


class BatchDeduper:
    """Per-partition memory of batch ids: first CreateTime (ms) and counted positions."""

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = max(horizon_ms, RETRY_DEDUPE_HORIZON_MS)
        self.first_ms: dict[str, int] = {}
        self.counted: dict[str, Bools] = {}
        self.newest_ms = int(np.iinfo(np.int64).min)

    def duplicates(self, batch_ids: pa.DictionaryArray, batch_index: Int64s,
                   produced_ms: Int64s) -> Bools:
        """Mask of rows already counted; remembers the rest.

        The records of one gateway batch sit next to each other in a partition, so rows
        are taken run by run (one vectorised compare of neighbouring codes): Python sees
        each run once (its id string from the dictionary), never each row.
        """
        n = len(batch_ids)
        dup = np.zeros(n, dtype=np.bool_)
        if n == 0:
            return dup
        self.newest_ms = max(self.newest_ms, int(produced_ms.max()))
        codes = batch_ids.indices.to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        ends = np.r_[starts[1:], n]
        # Per-run facts in a few vectorised calls; the loop below does dict work per run.
        firsts = np.minimum.reduceat(produced_ms, starts).tolist()
        tops = np.maximum.reduceat(batch_index, starts).tolist()
        rising = np.r_[np.diff(batch_index) > 0, True]
        rising[ends - 1] = True
        ordered = np.logical_and.reduceat(rising, starts).tolist()
        names = batch_ids.dictionary.take(pa.array(codes[starts])).to_pylist()
        for batch_id, a, b, first, top, in_order in zip(
                names, starts.tolist(), ends.tolist(), firsts, tops, ordered, strict=True):
            if self.first_ms.setdefault(batch_id, first) > first:
                self.first_ms[batch_id] = first
            if top < MAX_BATCH_INDEX:
                dup[a:b] = self._seen(batch_id, batch_index[a:b], top, in_order)
        return dup

    def _seen(self, batch_id: str, index: Int64s, top: int, in_order: bool) -> Bools:
        """Which of these positions were counted before (or repeat within this run)."""
        bitmap = self.counted.get(batch_id)
        if bitmap is None or len(bitmap) <= top:
            grown = np.zeros(max(64, 1 << top.bit_length()), dtype=np.bool_)
            if bitmap is not None:
                grown[:len(bitmap)] = bitmap
            bitmap = self.counted[batch_id] = grown
        seen = bitmap[index]
        if not in_order:  # a position may repeat within the run (two attempts side by side)
            _, first = np.unique(index, return_index=True)
            again = np.ones(len(index), dtype=np.bool_)
            again[first] = False
            seen |= again
        bitmap[index] = True
        return seen

    def forget_old(self) -> int:
        """Drop ids older than the horizon; returns how many were dropped."""
        cutoff = self.newest_ms - self.horizon_ms
        old = [k for k, first in self.first_ms.items() if first < cutoff]
        for k in old:
            del self.first_ms[k]
            self.counted.pop(k, None)
        return len(old)

    def __len__(self) -> int:
        return len(self.first_ms)
