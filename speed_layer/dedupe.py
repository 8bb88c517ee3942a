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
        """Mask of rows that belong to a retry; remembers the new ids it sees.

        The records of one gateway batch sit next to each other in a partition, so the
        ids are taken run by run (one vectorised compare of neighbours, ~12 ns a row):
        Python sees each run once, never each row.
        """
        n = len(batch_ids)
        if n == 0:
            return np.zeros(0, dtype=np.bool_)
        starts = np.flatnonzero(np.r_[True, batch_ids[1:] != batch_ids[:-1]])
        codes: dict[str, int] = {}
        run_code = np.fromiter((codes.setdefault(b, len(codes))
                                for b in batch_ids[starts].tolist()), np.int64, len(starts))
        names = list(codes)
        code = np.repeat(run_code, np.diff(np.r_[starts, n]))
        firsts = np.full(len(names), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(firsts, code, produced_ms)  # earliest record of each id in the poll
        known = self.first_ms
        has_id = np.ones(len(names), dtype=np.bool_)
        for j, batch_id in enumerate(names):  # one iteration per distinct id, not per row
            if batch_id == NO_BATCH_ID:
                has_id[j] = False
                continue
            first = known.get(batch_id)
            if first is None:
                known[batch_id] = int(firsts[j])
            else:
                firsts[j] = first
        limit = np.where(has_id, firsts, np.iinfo(np.int64).max - self.attempt_window_ms)
        if len(produced_ms):
            self.newest_ms = max(self.newest_ms, int(produced_ms.max()))
        dup: npt.NDArray[np.bool_] = produced_ms > limit[code] + self.attempt_window_ms
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
