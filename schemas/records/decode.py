"""Format v2 Kafka records → Arrow, many records in one call; bad records set aside.

Every record our encoder writes starts with the same schema message, byte for byte. The
records of a poll that do are spliced into one IPC stream (their schema messages and end
markers cut off; each record's dictionaries then replace the previous one's, as the stream
format allows) and read by one C++ call. Records written otherwise (another Arrow library,
other field order, possibly another pyarrow version) are read one by one and checked
field by field: correct, only slower. Whatever fails, in
either path, becomes a ``PoisonRecord`` (position and reason); this module never raises
for a bad record in a batch.

Checks after reading, vectorised over the whole poll: no nulls in non-null columns,
``batch_index >= 0``, finite ``latency_ms``, and the storable-text rule of
``schemas.storable`` (no U+0000), which for dictionary columns costs one look at each
distinct value. The schema is checked whole; the rows only in the columns read, so a
consumer that reads a projection is not stopped by a value it never stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from schemas.codec import PoisonRecord
from schemas.records.schema import (
    EVENT_RECORD_V2_SCHEMA,
    FORMAT_KEY,
    FORMAT_VERSION,
)
from schemas.storable import NOT_FINITE_PROBLEM, NUL_PROBLEM, unstorable_mask

_EOS: Final = b"\xff\xff\xff\xff\x00\x00\x00\x00"
_FORMAT: Final = (FORMAT_KEY.encode(), FORMAT_VERSION.encode())


def _canonical_prefix() -> bytes:
    sink = pa.BufferOutputStream()
    pa.ipc.new_stream(sink, EVENT_RECORD_V2_SCHEMA).close()
    stream: bytes = sink.getvalue().to_pybytes()
    if not stream.endswith(_EOS):  # pragma: no cover - pyarrow writes the v5 end marker
        raise RuntimeError("unexpected IPC end-of-stream marker")
    return stream[: -len(_EOS)]


CANONICAL_PREFIX: Final = _canonical_prefix()
_NAMES: Final = EVENT_RECORD_V2_SCHEMA.names
I64s = npt.NDArray[np.int64]


class InvalidRecord(ValueError):
    """A value that is not a format v2 record; the message says why."""


# What a poll decodes to: the v2 columns, each dictionary column with one dictionary for
# the whole poll (int32 codes: a poll may hold more distinct values than int16 allows).
CODES: Final = pa.dictionary(pa.int32(), pa.string())
DECODED_SCHEMA: Final = pa.schema(
    [pa.field(f.name, CODES, f.nullable) if pa.types.is_dictionary(f.type) else f
     for f in EVENT_RECORD_V2_SCHEMA],
    metadata=EVENT_RECORD_V2_SCHEMA.metadata,
)


@dataclass(frozen=True, slots=True)
class DecodedRecords:
    """The good records of a poll as one single-chunk table, and where their rows are."""

    table: pa.Table  # DECODED_SCHEMA's columns (those read), records in the order given
    positions: I64s  # position (in the values given) of each good record
    rows: I64s  # how many rows each good record has
    poison: list[PoisonRecord]

    def row_positions(self) -> I64s:
        """Position of each row's record, e.g. to look up its Kafka offset."""
        out: I64s = np.repeat(self.positions, self.rows)
        return out


def _schema_problem(schema: pa.Schema, names: Sequence[str]) -> str | None:
    """Why a record's schema is not v2 (every v2 column, whatever is read), or None."""
    meta = schema.metadata or {}
    version = meta.get(_FORMAT[0])
    if version != _FORMAT[1]:
        shown = "absent" if version is None else repr(version.decode("utf-8", "replace"))
        return f"not a format v2 record: schema metadata {FORMAT_KEY} is {shown}"
    for name in names:
        want = EVENT_RECORD_V2_SCHEMA.field(name).type
        index = schema.get_field_index(name)
        if index < 0:
            return f"column {name!r} is missing"
        got = schema.field(index).type
        if got != want and not (
            pa.types.is_dictionary(want)
            and (pa.types.is_string(got) or pa.types.is_large_string(got)
                 or (pa.types.is_dictionary(got) and pa.types.is_string(got.value_type)))
        ):
            return f"column {name!r} has type {got}, format v2 says {want}"
    return None


def read_record(value: bytes, columns: Sequence[str] | None = None) -> pa.Table:
    """One record as a table with the v2 types (only ``columns`` if given).

    Raises ``InvalidRecord`` (not Arrow's errors) when the value is not a v2 record.
    Extra columns of a newer writer are left out.
    """
    names = list(columns) if columns is not None else list(_NAMES)
    try:
        reader = pa.ipc.open_stream(value)
        problem = _schema_problem(reader.schema, _NAMES)
        if problem is not None:
            raise InvalidRecord(problem)
        table = reader.read_all().select(names)
        target = pa.schema([EVENT_RECORD_V2_SCHEMA.field(n) for n in names],
                           metadata=EVENT_RECORD_V2_SCHEMA.metadata)
        return table if table.schema.equals(target, check_metadata=True) else table.cast(target)
    except InvalidRecord:
        raise
    except (pa.ArrowException, ValueError, TypeError, OSError) as exc:
        raise InvalidRecord(f"not an Arrow IPC stream of format v2: {exc}") from None


def _splice(values: Sequence[bytes], indices: list[int],
            options: pa.ipc.IpcReadOptions) -> list[pa.RecordBatch] | None:
    """Read canonical records in one stream; None when it fails or does not add up."""
    cut = len(CANONICAL_PREFIX)
    parts: list[bytes | memoryview] = [CANONICAL_PREFIX]
    parts.extend(memoryview(values[i])[cut:-8] for i in indices)
    parts.append(_EOS)
    try:
        reader = pa.ipc.open_stream(b"".join(parts), options=options)
        batches = list(reader)
    except (pa.ArrowException, ValueError, OSError):
        return None
    return batches if len(batches) == len(indices) else None


def decode_records(values: Sequence[bytes], columns: Sequence[str] | None = None, *,
                   per_event: bool = False) -> DecodedRecords:
    """Decode a poll's values (only ``columns`` if given, in schema order).

    A record that is not v2 is poison as a whole. A row that breaks a rule of the format
    (null where none may be, U+0000, negative ``batch_index``, non-finite latency) makes
    its whole record poison, or with ``per_event`` only that row: it is left out and
    reported as a ``PoisonRecord`` with its ``row``, the record's other events kept.
    """
    names = [n for n in _NAMES if columns is None or n in columns]
    if columns is not None and len(names) != len(set(columns)):
        raise ValueError(f"unknown v2 columns: {sorted(set(columns) - set(_NAMES))}")
    options = pa.ipc.IpcReadOptions(
        included_fields=None if columns is None else [_NAMES.index(n) for n in names],
        use_threads=False,
    )
    prefix, floor = CANONICAL_PREFIX, len(CANONICAL_PREFIX) + len(_EOS)
    canonical = [i for i, v in enumerate(values)
                 if len(v) > floor and v.startswith(prefix) and v.endswith(_EOS)]
    parts: dict[int, list[pa.RecordBatch]] = {}
    poison: dict[int, str] = {}
    spliced = _splice(values, canonical, options) if canonical else []
    others: Sequence[int]
    if spliced is None:  # some record is bad: find it the slow way
        others = range(len(values))
    else:
        parts.update((i, [batch]) for i, batch in zip(canonical, spliced, strict=True))
        taken = set(canonical)
        others = [i for i in range(len(values)) if i not in taken]
    for i in others:
        try:
            parts[i] = read_record(values[i], names).combine_chunks().to_batches()
        except InvalidRecord as exc:
            poison[i] = str(exc)
    good = sorted(parts)
    batches = [b for i in good for b in parts[i]]
    rows = np.fromiter((sum(b.num_rows for b in parts[i]) for i in good), np.int64, len(good))
    table = _assemble(batches, names)
    positions = np.asarray(good, dtype=np.int64)
    checks = _row_checks(table)
    refused: list[PoisonRecord] = []
    if checks and per_event:
        bad_rows = _first_reasons(checks, table.num_rows)
        starts = np.r_[0, np.cumsum(rows)[:-1]].astype(np.int64)
        record_of = np.repeat(np.arange(len(good)), rows)
        for j, reason in bad_rows.items():  # one step per refused event (rare)
            r = int(record_of[j])
            refused.append(PoisonRecord(position=good[r], reason=reason,
                                        row=j - int(starts[r])))
        keep_rows = np.ones(table.num_rows, dtype=bool)
        keep_rows[list(bad_rows)] = False
        table = table.filter(pa.array(keep_rows))
        rows = rows - np.bincount(record_of[~keep_rows], minlength=len(good))
    elif checks:
        keep = np.ones(len(good), dtype=bool)
        for r, reason in _per_record(checks, rows).items():
            poison[good[r]] = reason
            keep[r] = False
        table = table.filter(pa.array(np.repeat(keep, rows)))
        positions, rows = positions[keep], rows[keep]
    out = [PoisonRecord(position=i, reason=poison[i]) for i in sorted(poison)]
    if refused:
        out = sorted(out + refused, key=lambda p: (p.position, -1 if p.row is None else p.row))
    return DecodedRecords(table=table, positions=positions, rows=rows, poison=out)


def event_value(value: bytes, row: int) -> tuple[bytes, str | None]:
    """One event of a record as a record of its own, and its ``event_id``.

    What a dead letter holding just that event carries (the id tells it from the other
    refused events of the same record).
    """
    table = read_record(value).slice(row, 1).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, EVENT_RECORD_V2_SCHEMA) as writer:
        writer.write_table(table)
    event_id = table.column("event_id")[0].as_py()
    return sink.getvalue().to_pybytes(), event_id if isinstance(event_id, str) else None


def _assemble(batches: list[pa.RecordBatch], names: list[str]) -> pa.Table:
    """One single-chunk table; dictionaries unified by Arrow (C++) into int32 codes."""
    schema = pa.schema([DECODED_SCHEMA.field(n) for n in names],
                       metadata=DECODED_SCHEMA.metadata)
    if not batches:
        return schema.empty_table()
    read = pa.schema([EVENT_RECORD_V2_SCHEMA.field(n) for n in names],
                     metadata=EVENT_RECORD_V2_SCHEMA.metadata)
    table = pa.Table.from_batches(batches, schema=read)
    try:
        combined = table.combine_chunks()
    except pa.ArrowInvalid:  # a poll with more than 32,767 distinct values in a column
        combined = pa.Table.from_arrays(
            [col.cast(schema.field(i).type).combine_chunks()
             for i, col in enumerate(table.columns)], schema=schema)
    # Column by column: ``Table.cast`` refuses nulls in non-null fields, which the row
    # check after this must see to report the record.
    return pa.Table.from_arrays(
        [col if col.type == field.type else col.cast(field.type)
         for col, field in zip(combined.columns, schema, strict=True)], schema=schema)


def _row_checks(table: pa.Table) -> list[tuple[str, npt.NDArray[np.bool_]]]:
    """Each rule some row breaks, with the mask of the rows that break it."""
    if table.num_rows == 0:
        return []
    checks: list[tuple[str, npt.NDArray[np.bool_]]] = []
    for field in table.schema:
        col = table.column(field.name)
        if not EVENT_RECORD_V2_SCHEMA.field(field.name).nullable and col.null_count:
            checks.append((f"{field.name}: null in a non-null column",
                           np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False))))
        if pa.types.is_string(field.type):
            bad = unstorable_mask(col)
            if bad.any():
                checks.append((f"{field.name}: {NUL_PROBLEM}", bad))
        elif pa.types.is_dictionary(field.type):
            chunk = col.chunk(0)
            bad_values = unstorable_mask(chunk.dictionary)
            if bad_values.any():
                codes = pc.fill_null(chunk.indices, 0).to_numpy(zero_copy_only=False)
                checks.append((f"{field.name}: {NUL_PROBLEM}",
                               bad_values[codes] & np.asarray(chunk.is_valid())))
        elif pa.types.is_map(field.type) and col.null_count < len(col):
            tags = col.chunk(0)
            offsets = tags.offsets.to_numpy()
            for part, texts in (("key", tags.keys), ("value", tags.items)):
                bad_texts = unstorable_mask(texts)
                if bad_texts.any():
                    counts = np.r_[0, np.cumsum(bad_texts)]
                    checks.append((f"{field.name}: a tag {part} {NUL_PROBLEM}",
                                   (counts[offsets[1:]] - counts[offsets[:-1]]) > 0))
    if "batch_index" in table.column_names:
        negative = pc.fill_null(pc.less(table.column("batch_index"), 0), False)
        if pc.any(negative).as_py():
            checks.append(("batch_index: must be >= 0",
                           np.asarray(negative.to_numpy(zero_copy_only=False))))
    if "latency_ms" in table.column_names:
        latency = table.column("latency_ms").to_numpy()
        finite = np.isfinite(latency)
        if not finite.all():
            checks.append((f"latency_ms: {NOT_FINITE_PROBLEM}", ~finite))
    return checks


def _first_reasons(checks: list[tuple[str, npt.NDArray[np.bool_]]], n: int) -> dict[int, str]:
    """Row → the first rule it breaks."""
    out: dict[int, str] = {}
    for reason, mask in checks:
        for j in np.flatnonzero(mask[:n]).tolist():
            out.setdefault(j, reason)
    return out


def _per_record(checks: list[tuple[str, npt.NDArray[np.bool_]]], rows: I64s) -> dict[int, str]:
    """Record (index among the good ones) → the first rule one of its rows breaks."""
    starts = np.r_[0, np.cumsum(rows)[:-1]].astype(np.int64)
    out: dict[int, str] = {}
    for reason, mask in checks:
        per_record = np.logical_or.reduceat(mask, starts) if len(starts) else mask[:0]
        per_record &= rows > 0
        for r in np.flatnonzero(per_record).tolist():
            out.setdefault(r, reason)
    return out
