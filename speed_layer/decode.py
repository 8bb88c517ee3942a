"""One poll of raw Kafka records → one decoded ``ShardBatch`` (pure, no Kafka client here).

Decoding goes through ``schemas.codec`` in one call per poll; records it cannot decode
become dead letters with the reason, and every per-record array is re-aligned with the
rows that did decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from schemas.codec import decode_metric_columns
from speed_layer.items import DeadLetter, ShardBatch


class Keys(Protocol):
    """Record keys by position: a list, or a lazy view read only for dead letters."""

    def __getitem__(self, index: int, /) -> bytes | None: ...

    def __len__(self) -> int: ...


def decode_poll(
    *,
    topic: str,
    partition: int,
    values: Sequence[bytes],
    keys: Keys,
    offsets: Sequence[int],
    batch_ids: Sequence[str | bytes],
    produced_ms: Sequence[int],
) -> ShardBatch:
    """Decode the values of one poll; ``next_offset`` is one past the last offset."""
    columns, poison = decode_metric_columns(values)
    all_offsets = np.asarray(offsets, dtype=np.int64)
    rows = columns.positions
    ids = np.empty(len(batch_ids), dtype=object)
    ids[:] = batch_ids
    produced = np.asarray(produced_ms, dtype=np.int64)
    dead = tuple(
        DeadLetter(
            topic=topic,
            partition=partition,
            offset=int(all_offsets[p.position]),
            key=keys[p.position],
            value=values[p.position],
            reason=p.reason,
        )
        for p in poison
    )
    return ShardBatch(
        topic=topic,
        partition=partition,
        next_offset=int(all_offsets[-1]) + 1 if len(all_offsets) else -1,
        columns=columns,
        offsets=all_offsets[rows] if dead else all_offsets,
        batch_ids=ids[rows] if dead else ids,
        produced_ms=produced[rows] if dead else produced,
        dead_letters=dead,
    )
