"""Pure logic of the lake writer: consumed batches → Arrow, per-partition roll buffers, files.

Columnar from the record to the file: a poll's records are decoded in one call into one
table whose string columns stay dictionary-encoded (one dictionary per poll), each
partition's rows are a zero-copy slice of it, and each slice is split once by (day,
project) with one ``take``. Parquet then writes the dictionaries' codes as they are; its
files carry the plain ``schemas.lake.LAKE_ARROW_SCHEMA`` types (no Arrow schema stored),
so every reader sees strings.

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

from schemas.codec import PoisonRecord
from schemas.lake import (
    LAKE_ARROW_SCHEMA,
    QUARANTINE_ARROW_SCHEMA,
    data_file_name,
    partition_dir,
    quarantine_path,
)
from schemas.records import DECODED_SCHEMA, decode_records, event_value

_EPOCH: Final = date(1970, 1, 1)
_US_PER_DAY: Final = 86_400_000_000
_FROM_RECORD: Final = tuple(n for n in LAKE_ARROW_SCHEMA.names
                            if n not in ("kafka_partition", "kafka_offset"))
_MEMORY_SCHEMA: Final = pa.schema([
    DECODED_SCHEMA.field(f.name).with_nullable(f.nullable) if f.name in DECODED_SCHEMA.names
    else f for f in LAKE_ARROW_SCHEMA])


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
    """Good events with the lake's columns (strings dictionary-encoded); bad ones apart."""

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
    columns = {n: table.column(n) for n in _FROM_RECORD}
    columns["kafka_partition"] = pa.chunked_array([pa.array(batch.partitions[at], pa.int32())])
    columns["kafka_offset"] = pa.chunked_array([pa.array(batch.offsets[at], pa.int64())])
    events = pa.Table.from_arrays([columns[n] for n in LAKE_ARROW_SCHEMA.names],
                                  schema=lake_memory_schema())
    return DecodedBatch(events, *_quarantine(batch, decoded.poison))


def lake_memory_schema() -> pa.Schema:
    """``LAKE_ARROW_SCHEMA`` with the record format's dictionary columns as a poll has them."""
    return _MEMORY_SCHEMA


def partition_runs(partitions: npt.NDArray[np.int32]) -> dict[int, list[tuple[int, int]]]:
    """Partition → (start, length) of each run of its rows, in order.

    A poll returns each partition's records in runs, so slicing them costs nothing.
    """
    if partitions.size == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, partitions[1:] != partitions[:-1]])
    ends = np.r_[starts[1:], partitions.size]
    runs: dict[int, list[tuple[int, int]]] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        runs.setdefault(int(partitions[start]), []).append((start, end - start))
    return runs


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
    # (day, project) → its rows, in offset order: a roll writes one file per entry.
    groups: dict[tuple[date, str], list[pa.Table]] = field(default_factory=dict)
    rows: int = 0
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
            self.nbytes += events.nbytes
            self.rows += events.num_rows
            for day, project, part in split_by_day_project(events):
                self.groups.setdefault((day, project), []).append(part)
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
    for (day, project), parts in sorted(buffer.groups.items()):
        files.append(RollFile(f"{partition_dir(day, project)}/{name}", pa.concat_tables(parts)))
    if buffer.quarantine:
        first_day = day_of(int(buffer.quarantine_days[0][0]))
        files.append(RollFile(quarantine_path(first_day, name),
                              pa.concat_tables(buffer.quarantine)))
    return files
