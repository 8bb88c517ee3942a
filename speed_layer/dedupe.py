"""Retried gateway batches counted once: batch ids of one partition, kept for a horizon.

A retried HTTP batch is published again with the same ``turnstile-batch-id`` header. One
attempt's records on a partition may reach several polls and may interleave with other
batches, so "seen this id before" is not enough: an attempt is the set of records of an id
produced (Kafka CreateTime) within ``attempt_window_ms`` of the id's first record. Later
records of the id are a retry and are dropped. Ids are forgotten once the partition's
newest record is ``horizon_ms`` younger than their first record, so memory stays bounded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from speed_layer.items import Int64s, Objects

NO_BATCH_ID = ""


class BatchDeduper:
    """Per-partition memory of batch ids: id → CreateTime of its first record (ms)."""

    def __init__(self, attempt_window_ms: int, horizon_ms: int) -> None:
        self.attempt_window_ms = attempt_window_ms
        self.horizon_ms = horizon_ms
        self.first_ms: dict[str, int] = {}
        self.newest_ms = np.iinfo(np.int64).min

    def duplicates(self, batch_ids: Objects, produced_ms: Int64s) -> npt.NDArray[np.bool_]:
        """Mask of rows that belong to a retry; remembers the new ids it sees."""
        dup = np.zeros(len(batch_ids), dtype=np.bool_)
        has_id = batch_ids != NO_BATCH_ID
        if not has_id.any():
            return dup
        ids = batch_ids[has_id]
        produced = produced_ms[has_id]
        unique, first_index, inverse = np.unique(ids, return_index=True, return_inverse=True)
        firsts = np.empty(len(unique), dtype=np.int64)
        known = self.first_ms
        # One iteration per distinct batch id in the poll, not per record.
        for j, (batch_id, index) in enumerate(zip(unique.tolist(), first_index.tolist(),
                                                  strict=True)):
            first = known.get(batch_id)
            if first is None:
                first = int(produced[index])
                known[batch_id] = first
            firsts[j] = first
        dup[has_id] = produced > firsts[inverse] + self.attempt_window_ms
        self.newest_ms = max(self.newest_ms, int(produced.max()))
        return dup

    def forget_old(self) -> int:
        """Drop ids older than the horizon; returns how many were dropped."""
        cutoff = self.newest_ms - self.horizon_ms
        old = [k for k, first in self.first_ms.items() if first < cutoff]
        for k in old:
            del self.first_ms[k]
        return len(old)

    def __len__(self) -> int:
        return len(self.first_ms)
