"""Integer ids for strings and for tuples of ids, kept per shard, looked up in bulk.

A window is named by integers, never by a joined string: each string column of a poll
(dictionary-encoded by decode) is mapped to the shard's own codes with one C++ hash
look-up per *distinct* value (``pc.index_in``), and a series is the chain of pairs
(project, api_key) → + endpoint → + (method, status class), each pair packed into one
int64 and given a dense id by a sorted-array look-up (``np.searchsorted``). Python never
touches a row; ids stay below 2**31 because the windows rebuild these tables from their
live windows when they grow (``ShardWindows._compact``).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from speed_layer.items import Int64s

ID_LIMIT: Final = 1 << 31


class StringTable:
    """The distinct strings of one column; a string's code is its position."""

    def __init__(self) -> None:
        self.values: pa.Array = pa.array([], pa.string())

    def __len__(self) -> int:
        return len(self.values)

    def codes(self, column: pa.Array) -> Int64s:
        """The code of each row of ``column`` (dictionary or plain strings); new ones added."""
        if pa.types.is_dictionary(column.type):
            distinct, rows = column.dictionary, column.indices.to_numpy(zero_copy_only=False)
        else:
            encoded = pc.dictionary_encode(column)
            distinct, rows = encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False)
        found = pc.index_in(distinct, value_set=self.values)
        if found.null_count:
            fresh = pc.unique(distinct.filter(found.is_null()))
            self.values = pa.concat_arrays([self.values, fresh.cast(pa.string())])
            found = pc.index_in(distinct, value_set=self.values)
        mapped = found.to_numpy(zero_copy_only=False).astype(np.int64)
        out: Int64s = mapped[rows]
        return out

    def take(self, codes: Int64s) -> pa.Array:
        return self.values.take(pa.array(codes))


class KeyMap:
    """int64 key → int64 value, held as a sorted key array (bulk look-up, insert, delete)."""

    def __init__(self) -> None:
        self.keys: Int64s = np.zeros(0, np.int64)
        self.values: Int64s = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, keys: Int64s) -> Int64s:
        """The value of each key, -1 where absent."""
        if not len(self.keys):
            return np.full(len(keys), -1, np.int64)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.values[at], -1)

    def put(self, keys: Int64s, values: Int64s) -> None:
        """Add absent, distinct ``keys``."""
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        at = np.searchsorted(self.keys, keys)
        self.keys = np.insert(self.keys, at, keys)
        self.values = np.insert(self.values, at, values)

    def drop(self, keys: Int64s) -> None:
        """Remove present ``keys``."""
        if not len(keys):
            return
        keep = ~np.isin(self.keys, keys, assume_unique=True)
        self.keys, self.values = self.keys[keep], self.values[keep]


class PairIds:
    """Dense ids for pairs of ids (both below ``ID_LIMIT``)."""

    def __init__(self) -> None:
        self.map = KeyMap()

    def __len__(self) -> int:
        return len(self.map)

    def ids(self, high: Int64s, low: Int64s) -> Int64s:
        packed = (high << 31) | low
        distinct, inverse = np.unique(packed, return_inverse=True)
        found = self.map.get(distinct)
        new = np.flatnonzero(found < 0)
        if len(new):
            fresh = np.arange(len(self.map), len(self.map) + len(new), dtype=np.int64)
            found[new] = fresh
            self.map.put(distinct[new], fresh)
        out: Int64s = found[inverse.reshape(-1)]
        return out
