r"""What a storable event is: the one rule the gateway enforces and every consumer re-checks.

An accepted event must be storable by every sink (PostgreSQL text/bigint/double, Parquet,
DuckDB, Kafka tools). msgspec already guarantees valid UTF-8 on the wire and the numeric
ranges of ``schemas.event``; what it lets through, and PostgreSQL refuses, is:

- U+0000 in any text (PostgreSQL ``text`` cannot hold it: "invalid byte sequence … 0x00");
- lone surrogates (U+D800–U+DFFF), which have no UTF-8 encoding, so encoding the text for
  COPY, Parquet or Kafka fails (msgspec refuses a ``\ud800`` escape on the wire, but text
  from other sources — a Python agent, an older lake file — can still hold one);
- non-finite numbers (not valid JSON, but a client library may still send them).

``text_problem`` checks one value (the gateway, per event and field); ``unstorable_mask``
checks a whole Arrow column at once (consumers, defence in depth, no Python per value).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

NUL: Final = "\x00"
NUL_PROBLEM: Final = "contains U+0000 (NUL), which PostgreSQL cannot store"
SURROGATE_PROBLEM: Final = "contains a lone surrogate (U+D800-U+DFFF), which is not UTF-8"
NOT_FINITE_PROBLEM: Final = "must be a finite number"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored everywhere, or None. ASCII text costs one C call."""
    if value.isascii():
        return NUL_PROBLEM if NUL in value else None
    if NUL in value:
        return NUL_PROBLEM
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_PROBLEM
    return None


def number_problem(value: float) -> str | None:
    """Why a float cannot be stored everywhere (NaN and ±inf), or None."""
    return None if math.isfinite(value) else NOT_FINITE_PROBLEM


def unstorable_mask(column: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """True for each value of a string (or dictionary-of-string) column holding U+0000.

    Arrow strings are UTF-8 by construction, so lone surrogates cannot be in one; NUL can.
    Nulls count as storable.
    """
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    found = pc.match_substring(column, NUL)
    return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), dtype=bool)
