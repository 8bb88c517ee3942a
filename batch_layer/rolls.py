"""Pure logic of the lake writer: consumed batches → Arrow, per-partition roll buffers, files.

A *roll* is a contiguous offset range of one Kafka partition, written as one Parquet file
per (day, project) it touches, named by the partition and the roll's first offset. Because
a roll's content is a pure function of its offset range, a roll interrupted by a crash is
replayed over exactly the same range (its intent is recorded before any file becomes
visible) and rewrites exactly the same files: the lake holds every event once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from batch_layer.lake import (
    LAKE_ARROW_SCHEMA,
    QUARANTINE_ARROW_SCHEMA,
    data_file_name,
    partition_dir,
)
from schemas.codec import PoisonRecord
from schemas.records import decode_records, event_value

_EPOCH: Final = date(1970, 1, 1)
_US_PER_DAY: Final = 86_400_000_000
_FROM_RECORD: Final = tuple(n for n in LAKE_ARROW_SCHEMA.names
                            if n not in ("kafka_partition", "kafka_offset"))


@dataclass(frozen=True)
class ConsumedBatch:
    """The raw fields of consumed messages (format v2 records), as parallel sequences."""

    partitions: npt.NDArray[np.int32]
    offsets: npt.NDArray[np.int64]
    keys: Sequence[bytes | None]
    values: Sequence[bytes]
    timestamps_ms: npt.NDArray[np.int64]


@dataclass(frozen=True)
class DecodedBatch:
    """Good events as a LAKE_ARROW_SCHEMA table, bad ones as a quarantine table."""

    events: pa.Table
    quarantine: pa.Table
    quarantine_day: npt.NDArray[np.int64]  # epoch day (Kafka timestamp) of each bad record


def decode_batch(batch: ConsumedBatch) -> DecodedBatch:
    """Decode all records at once into Arrow; refused ones go to quarantine, not /dev/null.

    Refused: a record that is not format v2 (whole), or an event that breaks its rules,
    e.g. text PostgreSQL cannot store (that event alone, as a one-event record; the
    record's other events are kept). Quarantined records and events also become dead
    letters when their roll is committed (``lake_writer.py``). An event's
    ``kafka_partition``/``kafka_offset`` are those of its record.
    """
    decoded = decode_records(batch.values, per_event=True)
    table = decoded.table
    at = decoded.row_positions()
    arrays = [table.column(n).cast(LAKE_ARROW_SCHEMA.field(n).type) for n in _FROM_RECORD]
    events = pa.Table.from_arrays(arrays, names=list(_FROM_RECORD))
    events = events.append_column(
        "kafka_partition", pa.array(batch.partitions[at], pa.int32())).append_column(
        "kafka_offset", pa.array(batch.offsets[at], pa.int64()))
    return DecodedBatch(events.select(LAKE_ARROW_SCHEMA.names).cast(LAKE_ARROW_SCHEMA),
                        *_quarantine(batch, decoded.poison))


def _quarantine(batch: ConsumedBatch, poison: list[PoisonRecord]
                ) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    bad = np.fromiter((p.position for p in poison), np.int64, len(poison))
    values: list[bytes] = []
    event_ids: list[str | None] = []
    for p in poison:  # one step per refused record or event (rare)
        if p.row is None:
            values.append(batch.values[p.position])
            event_ids.append(None)
        else:
            value, event_id = event_value(batch.values[p.position], p.row)
            values.append(value)
            event_ids.append(event_id)
    quarantine = pa.Table.from_pydict(
        {
            "kafka_partition": pa.array(batch.partitions[bad], pa.int32()),
            "kafka_offset": pa.array(batch.offsets[bad], pa.int64()),
            "key": [batch.keys[int(i)] for i in bad],
            "value": values,
            "reason": [p.reason for p in poison],
            "project_id": [project_of_key(batch.keys[p.position]) for p in poison],
            "event_id": event_ids,
        },
        schema=QUARANTINE_ARROW_SCHEMA,
    )
    return quarantine, batch.timestamps_ms[bad] // 86_400_000


def project_of_key(key: bytes | None) -> str | None:
    """The project of an undecodable record, from its key ``project_id:api_key``."""
    if not key or b":" not in key:
        return None
    return key.split(b":", 1)[0].decode("utf-8", "backslashreplace")


def epoch_days(table: pa.Table) -> npt.NDArray[np.int64]:
    """UTC epoch day of every event's timestamp."""
    micros = table.column("timestamp").cast(pa.int64()).to_numpy()
    days: npt.NDArray[np.int64] = np.floor_divide(micros, _US_PER_DAY)
    return days


def day_of(epoch_day: int) -> date:
    return _EPOCH + timedelta(days=int(epoch_day))


def split_by_day_project(table: pa.Table) -> list[tuple[date, str, pa.Table]]:
    """One slice per (UTC day, project); rows keep their offset order inside a slice."""
    if table.num_rows == 0:
        return []
    projects = pc.dictionary_encode(table.column("project_id")).combine_chunks()
    codes = projects.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = projects.dictionary.to_pylist()
    days = epoch_days(table)
    composite = (days - days.min()) * len(names) + codes
    order = np.argsort(composite, kind="stable")
    ordered = table.take(pa.array(order))
    keys = composite[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return [
        (day_of(days[order[s]]), names[codes[order[s]]], ordered.slice(s, e - s))
        for s, e in zip(starts, ends, strict=True)
    ]


@dataclass
class PartitionBuffer:
    """What is buffered for one Kafka partition since its last roll."""

    partition: int
    opened_at: float
    tables: list[pa.Table] = field(default_factory=list)
    quarantine: list[pa.Table] = field(default_factory=list)
    quarantine_days: list[npt.NDArray[np.int64]] = field(default_factory=list)
    first_offset: int = -1
    last_offset: int = -1
    nbytes: int = 0
    # Set while replaying an interrupted roll: the roll must end exactly here.
    replay_last_offset: int | None = None

    def add(self, events: pa.Table, quarantine: pa.Table, q_days: npt.NDArray[np.int64],
            first: int, last: int) -> None:
        if self.first_offset < 0:
            self.first_offset = first
        self.last_offset = last
        if events.num_rows:
            self.tables.append(events)
            self.nbytes += events.nbytes
        if quarantine.num_rows:
            self.quarantine.append(quarantine)
            self.quarantine_days.append(q_days)

    @property
    def empty(self) -> bool:
        return self.first_offset < 0

    @property
    def replay_complete(self) -> bool:
        return self.replay_last_offset is not None and self.last_offset >= self.replay_last_offset


@dataclass(frozen=True)
class RollFile:
    """One file of a roll: lake-relative path and content."""

    relative_path: str
    table: pa.Table


def slice_offsets(table: pa.Table, offsets: npt.NDArray[np.int64], upto: int
                  ) -> tuple[pa.Table, pa.Table]:
    """Split rows (ordered by offset) into those at or below ``upto`` and the rest."""
    cut = int(np.searchsorted(offsets, upto, side="right"))
    return table.slice(0, cut), table.slice(cut)


def roll_files(buffer: PartitionBuffer) -> list[RollFile]:
    """The files a roll writes: one per (day, project), plus one quarantine file if needed."""
    name = data_file_name(buffer.partition, buffer.first_offset)
    files: list[RollFile] = []
    if buffer.tables:
        events = pa.concat_tables(buffer.tables)
        for day, project, part in split_by_day_project(events):
            files.append(RollFile(f"{partition_dir(day, project)}/{name}", part))
    if buffer.quarantine:
        first_day = day_of(int(buffer.quarantine_days[0][0]))
        files.append(RollFile(f"_quarantine/dt={first_day.isoformat()}/{name}",
                              pa.concat_tables(buffer.quarantine)))
    return files
