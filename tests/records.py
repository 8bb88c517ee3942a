"""Format v2 records for tests: as the gateway makes them, or one event per record."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec
import pyarrow as pa

from schemas.arrow import EVENT_ARROW_SCHEMA
from schemas.event import EventRecord
from schemas.records import V2Record, encode_event_records, read_record


def gateway_records(records: Sequence[EventRecord], *, partitions: int,
                    batch_id: str | None = None) -> list[V2Record]:
    """The records the gateway produces for one HTTP batch (one per partition touched)."""
    return encode_event_records(records, batch_id=batch_id or uuid.uuid4().hex,
                                partitioner=partitions)


def one_per_event(records: Sequence[EventRecord], *, batch_id: str | Sequence[str] = "",
                  first_index: int | Sequence[int] = 0) -> list[bytes]:
    """Each event as a record of its own: row i of a poll is then record i (offset i).

    ``batch_id`` "" gives the events a fresh id of their own call, positions from
    ``first_index`` (an int, or one per event).
    """
    n = len(records)
    fresh = uuid.uuid4().hex
    ids = [batch_id] * n if isinstance(batch_id, str) else list(batch_id)
    index = (list(range(first_index, first_index + n)) if isinstance(first_index, int)
             else list(first_index))
    out = []
    for r, b, i in zip(records, ids, index, strict=True):
        one = msgspec.structs.replace(r, batch_id=b or fresh, batch_index=i)
        (rec,) = encode_event_records([one], batch_id=b or fresh, partitioner=1)
        out.append(rec.value)
    return out


def events_table(records: Sequence[EventRecord]) -> pa.Table:
    """Events as a table with ``EVENT_ARROW_SCHEMA`` (the lake's columns), through v2;
    unchecked (it may hold what a consumer would refuse)."""
    values = [r.value for r in encode_event_records(records, batch_id="t", partitioner=1)]
    table = pa.concat_tables([read_record(v) for v in values])
    return pa.Table.from_arrays(
        [table.column(f.name).cast(f.type) for f in EVENT_ARROW_SCHEMA],
        schema=EVENT_ARROW_SCHEMA)
