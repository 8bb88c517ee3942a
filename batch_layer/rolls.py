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
from typing import Final, Protocol

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
from batch_layer.storable import unstorable_rows
from schemas.codec import PoisonRecord, decode_records, records_to_arrow
from schemas.event import EventRecord

_EPOCH: Final = date(1970, 1, 1)
_US_PER_DAY: Final = 86_400_000_000


class HeaderBatchIds(Protocol):
    """Batch id headers by position (None when absent): a list, or a lazy view."""

    def __getitem__(self, index: int, /) -> str | None: ...


@dataclass(frozen=True)
class ConsumedBatch:
    """The raw fields of consumed messages, as parallel sequences."""

    partitions: npt.NDArray[np.int32]
    offsets: npt.NDArray[np.int64]
    keys: Sequence[bytes | None]
    values: Sequence[bytes]
    # Read only for records whose body carries no batch id (written before it did).
    header_batch_ids: HeaderBatchIds
    timestamps_ms: npt.NDArray[np.int64]


@dataclass(frozen=True)
class DecodedBatch:
    """Good events as a LAKE_ARROW_SCHEMA table, bad ones as a quarantine table."""

    events: pa.Table
    quarantine: pa.Table
    quarantine_day: npt.NDArray[np.int64]  # epoch day (Kafka timestamp) of each bad record


def _to_arrow(records: list[EventRecord]) -> tuple[pa.Table, list[PoisonRecord]]:
    """Records as Arrow; one Arrow cannot hold (a bug upstream) is refused, not fatal."""
    try:
        return records_to_arrow(records), []
    except (pa.ArrowException, UnicodeError, OverflowError, TypeError, ValueError):
        pass
    kept: list[EventRecord] = []
    refused: list[PoisonRecord] = []
    for i, record in enumerate(records):  # the rare path: find the records at fault
        try:
            records_to_arrow([record])
            kept.append(record)
        except (pa.ArrowException, UnicodeError, OverflowError, TypeError, ValueError) as exc:
            refused.append(PoisonRecord(i, f"Parquet cannot hold the record: {exc}"))
    return records_to_arrow(kept), refused


def decode_batch(batch: ConsumedBatch) -> DecodedBatch:
    """Decode all values at once; refused records go to quarantine, not to /dev/null.

    Refused: undecodable, or holding what Arrow or PostgreSQL cannot store. Quarantined
    records also become dead letters when their roll is committed (``lake_writer.py``).
    """
    records, poison = decode_records(batch.values)
    bad = np.fromiter((p.position for p in poison), np.int64, len(poison))
    good = np.ones(len(batch.values), dtype=bool)
    good[bad] = False
    good_idx = np.flatnonzero(good)
    events, refused = _to_arrow(records)
    if refused:
        at = [p.position for p in refused]
        poison = poison + [PoisonRecord(int(good_idx[i]), p.reason)
                           for i, p in zip(at, refused, strict=True)]
        gone = set(at)
        records = [r for i, r in enumerate(records) if i not in gone]
        good_idx = np.delete(good_idx, at)
    headers = batch.header_batch_ids
    batch_ids = [r.batch_id or headers[i]
                 for r, i in zip(records, good_idx.tolist(), strict=True)]
    events = (
        events.append_column("kafka_partition", pa.array(batch.partitions[good_idx], pa.int32()))
        .append_column("kafka_offset", pa.array(batch.offsets[good_idx], pa.int64()))
        .append_column("batch_id", pa.array(batch_ids, pa.string()))
    )
    projects: dict[int, str] = {}
    unstorable, reasons = unstorable_rows(events)
    if unstorable is not None:
        rows = np.flatnonzero(unstorable).tolist()
        project_column = events.column("project_id")
        for row in rows:  # one step per refused row (rare)
            position = int(good_idx[row])
            poison.append(PoisonRecord(position, reasons[row]))
            projects[position] = str(project_column[row].as_py())
        events = events.filter(pa.array(~unstorable))
    poison.sort(key=lambda p: p.position)
    bad = np.fromiter((p.position for p in poison), np.int64, len(poison))
    quarantine = pa.Table.from_pydict(
        {
            "kafka_partition": pa.array(batch.partitions[bad], pa.int32()),
            "kafka_offset": pa.array(batch.offsets[bad], pa.int64()),
            "key": [batch.keys[int(i)] for i in bad],
            "value": [batch.values[int(i)] for i in bad],
            "reason": [p.reason for p in poison],
            "project_id": [projects.get(p.position) or project_of_key(batch.keys[p.position])
                           for p in poison],
        },
        schema=QUARANTINE_ARROW_SCHEMA,
    )
    days = batch.timestamps_ms[bad] // 86_400_000
    return DecodedBatch(events.cast(LAKE_ARROW_SCHEMA), quarantine, days)


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
