"""One poll of raw Kafka records → one decoded ``ShardBatch`` (pure, no Kafka client here).

Records are format v2 (many events each, ``schemas.records``), decoded in one call per
poll into the aggregation columns; rows are events, not records, so every per-record
array (offsets, produce times) is indexed by each row's record position. A record that is
not v2 becomes one dead letter with the reason; an event that breaks a rule of the format
(text PostgreSQL cannot store, U+0000, see ``schemas.storable``; a null where none may be)
becomes a dead letter holding just that event, and the record's other events go on. One
window holding U+0000 would make every write of its shard fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import numpy as np

from schemas.dead_letters import DeadLetter
from schemas.records import decode_metric_arrays, event_value
from schemas.storable import NUL_PROBLEM
from speed_layer.items import ShardBatch

COMPONENT: Final = "speed_layer"


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
    produced_ms: Sequence[int],
) -> ShardBatch:
    """Decode the values of one poll; ``next_offset`` is one past the last offset."""
    arrays, poison = decode_metric_arrays(values, per_event=True)
    all_offsets = np.asarray(offsets, dtype=np.int64)
    dead = []
    for p in poison:  # one step per refused record or event (rare)
        key = keys[p.position]
        event_id = None
        if p.row is None:
            kind, value = "undecodable", values[p.position]
        else:
            kind = "unstorable" if NUL_PROBLEM in p.reason else "invalid"
            value, event_id = event_value(values[p.position], p.row)
        dead.append(DeadLetter(
            component=COMPONENT, reason=p.reason, kind=kind, project_id=_project_of(key),
            topic=topic, partition=partition, offset=int(all_offsets[p.position]),
            event_id=event_id, key=key, value=value))
    rows = arrays.positions
    produced = np.asarray(produced_ms, dtype=np.int64)
    return ShardBatch(
        topic=topic,
        partition=partition,
        next_offset=int(all_offsets[-1]) + 1 if len(all_offsets) else -1,
        columns=arrays,
        offsets=all_offsets[rows],
        produced_ms=produced[rows],
        dead_letters=tuple(dead),
    )


def _project_of(key: bytes | None) -> str | None:
    """The project of a refused record, from its key ``project_id:api_key``."""
    if not key or b":" not in key:
        return None
    return key.split(b":", 1)[0].decode("utf-8", "backslashreplace")
