"""Which rows of an Arrow table hold text PostgreSQL cannot store (the storable-event rule).

Parquet would keep U+0000, but every later reader that writes to PostgreSQL (billing,
reconciliation) would then fail on it for every tenant, so the lake writer refuses such
rows as the gateway does. A column is first checked as a whole (one numpy scan of its
data buffer for a zero byte, ~0.1 ns a byte); only a column that holds one is looked at
value by value with ``schemas.storable.unstorable_mask``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from schemas.storable import NUL_PROBLEM, unstorable_mask


def _has_zero_byte(column: pa.Array | pa.ChunkedArray) -> bool:
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        data = chunk.buffers()[2] if len(chunk.buffers()) > 2 else None
        if data is not None and data.size and not np.frombuffer(data, np.uint8).all():
            return True
    return False


def _row_mask(column: pa.Array | pa.ChunkedArray, n: int) -> npt.NDArray[np.bool_] | None:
    """Rows of a string or map<string, string> column holding U+0000; None when none do."""
    if pa.types.is_map(column.type):
        entry = pa.struct([("key", column.type.key_type), ("value", column.type.item_type)])
        as_list = column.cast(pa.list_(entry))
        entries = pc.list_flatten(as_list)
        parents = np.asarray(pc.list_parent_indices(as_list).to_numpy(zero_copy_only=False),
                             dtype=np.int64)
        bad = np.zeros(n, dtype=bool)
        for part in (pc.struct_field(entries, [0]), pc.struct_field(entries, [1])):
            inner = _row_mask(part, len(part))
            if inner is not None:
                bad[parents[inner]] = True
        return bad if bad.any() else None
    if not pa.types.is_string(column.type) or not _has_zero_byte(column):
        return None
    mask = unstorable_mask(column)
    return mask if mask.any() else None


def unstorable_rows(table: pa.Table) -> tuple[npt.NDArray[np.bool_] | None, list[str]]:
    """A mask of the rows with unstorable text (None when there are none), and why."""
    bad: npt.NDArray[np.bool_] | None = None
    reasons: list[str] = []
    for name in table.column_names:
        mask = _row_mask(table.column(name), table.num_rows)
        if mask is None:
            continue
        if bad is None:
            bad = np.zeros(table.num_rows, dtype=bool)
            reasons = [""] * table.num_rows
        for i in np.flatnonzero(mask & ~bad).tolist():  # one step per refused row (rare)
            reasons[i] = f"{name}: {NUL_PROBLEM}"
        bad |= mask
    return bad, reasons
