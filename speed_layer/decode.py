"""One poll of raw Kafka records → one decoded ``ShardBatch`` (pure, no Kafka client here).

Decoding goes through ``schemas.codec`` in one call per poll; records it cannot decode
become dead letters with the reason, and every per-record array is re-aligned with the
rows that did decode. Decoded text PostgreSQL cannot store (U+0000, see
``schemas.storable``) is refused here too, before it reaches the windows: one window
holding it would make every write of its shard fail. The batch id comes from the record
body; only records written before it was there have their ``turnstile-batch-id`` header
read (reading headers costs ~1 µs a record, a tenth of the whole flow).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from schemas.codec import MetricColumns, decode_metric_columns
from schemas.dead_letters import DeadLetter
from schemas.storable import NUL, NUL_PROBLEM, unstorable_mask
from speed_layer.items import ShardBatch

COMPONENT: Final = "speed_layer"
# The decoded text columns that reach PostgreSQL (metrics_1m, late_events) or a window key.
TEXT_COLUMNS: Final = ("project_id", "api_key", "endpoint", "method", "batch_id")


class Keys(Protocol):
    """Record keys by position: a list, or a lazy view read only for dead letters."""

    def __getitem__(self, index: int, /) -> bytes | None: ...

    def __len__(self) -> int: ...


class HeaderBatchIds(Protocol):
    """Batch id headers by position ("" when absent), read only for older records."""

    def __getitem__(self, index: int, /) -> str: ...


def decode_poll(
    *,
    topic: str,
    partition: int,
    values: Sequence[bytes],
    keys: Keys,
    offsets: Sequence[int],
    header_batch_ids: HeaderBatchIds,
    produced_ms: Sequence[int],
) -> ShardBatch:
    """Decode the values of one poll; ``next_offset`` is one past the last offset."""
    columns, poison = decode_metric_columns(values)
    all_offsets = np.asarray(offsets, dtype=np.int64)
    dead = [
        DeadLetter(component=COMPONENT, reason=p.reason, kind="undecodable",
                   project_id=_project_of(keys[p.position]), topic=topic,
                   partition=partition, offset=int(all_offsets[p.position]),
                   key=keys[p.position], value=values[p.position])
        for p in poison
    ]
    bad, reasons = unstorable_rows(columns)
    if bad is not None:
        for j in np.flatnonzero(bad).tolist():  # one step per refused record (rare)
            at = int(columns.positions[j])
            dead.append(DeadLetter(
                component=COMPONENT, reason=reasons[j], kind="unstorable",
                project_id=columns.project_id[j], topic=topic, partition=partition,
                offset=int(all_offsets[at]), key=keys[at], value=values[at]))
        columns = keep_rows(columns, ~bad)
        dead.sort(key=lambda d: d.offset or 0)
    rows = columns.positions
    ids = np.empty(len(columns), dtype=object)
    ids[:] = columns.batch_id
    if "" in columns.batch_id:  # records from before the body carried it
        for j in np.flatnonzero(ids == "").tolist():
            ids[j] = header_batch_ids[int(rows[j])]
    produced = np.asarray(produced_ms, dtype=np.int64)
    return ShardBatch(
        topic=topic,
        partition=partition,
        next_offset=int(all_offsets[-1]) + 1 if len(all_offsets) else -1,
        columns=columns,
        offsets=all_offsets[rows] if dead else all_offsets,
        batch_ids=ids,
        produced_ms=produced[rows] if dead else produced,
        dead_letters=tuple(dead),
    )


def _project_of(key: bytes | None) -> str | None:
    """The project of an undecodable record, from its key ``project_id:api_key``."""
    if not key or b":" not in key:
        return None
    return key.split(b":", 1)[0].decode("utf-8", "backslashreplace")


def unstorable_rows(columns: MetricColumns) -> tuple[npt.NDArray[np.bool_] | None, list[str]]:
    """Rows with text PostgreSQL cannot store (None when there are none), and why.

    A join of each column (one C call, ~5 ns a value) finds out whether any value holds
    U+0000; only then does ``unstorable_mask`` (~100 ns a value) say which.
    """
    bad: npt.NDArray[np.bool_] | None = None
    reasons: list[str] = []
    for name in TEXT_COLUMNS:
        values: list[str] = getattr(columns, name)
        if NUL not in "".join(values):
            continue
        mask = unstorable_mask(pa.array(values, pa.string()))
        if bad is None:
            bad = np.zeros(len(values), dtype=bool)
            reasons = [""] * len(values)
        for j in np.flatnonzero(mask & ~bad).tolist():
            reasons[j] = f"{name}: {NUL_PROBLEM}"
        bad |= mask
    return bad, reasons


def keep_rows(columns: MetricColumns, keep: npt.NDArray[np.bool_]) -> MetricColumns:
    """The rows of ``columns`` where ``keep`` is true (lists re-built only on this rare path)."""
    picked: dict[str, object] = {}
    for f in dataclasses.fields(columns):
        value = getattr(columns, f.name)
        if isinstance(value, list):
            picked[f.name] = [v for v, k in zip(value, keep.tolist(), strict=True) if k]
        else:
            picked[f.name] = value[keep]
    return MetricColumns(**picked)  # type: ignore[arg-type]
