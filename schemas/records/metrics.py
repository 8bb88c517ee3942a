"""The projection of v2 records that aggregation needs, as arrays: no object per event.

Only the twelve columns aggregation reads are decoded (``IpcReadOptions.included_fields``).
Each string column comes out as one ``pa.DictionaryArray`` for the whole poll (int32 codes
into one dictionary): the series key is a handful of integer columns, not joined strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from schemas.codec import MetricColumns, PoisonRecord
from schemas.records.decode import decode_records

METRIC_COLUMNS: Final = (
    "project_id", "timestamp", "received_at", "method", "endpoint", "status_code",
    "latency_ms", "request_bytes", "response_bytes", "api_key", "batch_id", "batch_index",
)

I64s = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class MetricArrays:
    """Decoded poll; ``positions`` maps each row to the position of its Kafka record."""

    project_id: pa.DictionaryArray
    api_key: pa.DictionaryArray
    endpoint: pa.DictionaryArray
    method: pa.DictionaryArray
    batch_id: pa.DictionaryArray
    batch_index: I64s
    timestamp_us: I64s
    received_at_us: I64s
    status_code: npt.NDArray[np.int16]
    latency_ms: npt.NDArray[np.float64]
    request_bytes: I64s
    response_bytes: I64s
    positions: I64s

    def __len__(self) -> int:
        return len(self.timestamp_us)

    def batch_ids(self) -> npt.NDArray[np.object_]:
        """The batch id of each row as an object array (one ``str`` per distinct id)."""
        values = np.asarray(self.batch_id.dictionary.to_pylist(), dtype=object)
        out: npt.NDArray[np.object_] = values[self.batch_id.indices.to_numpy()]
        return out

    def to_metric_columns(self) -> MetricColumns:
        """The same rows as ``MetricColumns`` (strings become list items).

        A bridge for consumers not yet reading codes; it costs a Python string per row
        and column, which the codes avoid.
        """
        def strings(arr: pa.DictionaryArray) -> list[str]:
            values = np.asarray(arr.dictionary.to_pylist(), dtype=object)
            out: list[str] = values[arr.indices.to_numpy()].tolist()
            return out

        return MetricColumns(
            project_id=strings(self.project_id), api_key=strings(self.api_key),
            endpoint=strings(self.endpoint), method=strings(self.method),
            batch_id=strings(self.batch_id), batch_index=self.batch_index,
            timestamp_us=self.timestamp_us, received_at_us=self.received_at_us,
            status_code=self.status_code, latency_ms=self.latency_ms,
            request_bytes=self.request_bytes, response_bytes=self.response_bytes,
            positions=self.positions,
        )


def _codes(table: pa.Table, name: str) -> pa.DictionaryArray:
    column = table.column(name)
    if column.num_chunks == 1:
        chunk: pa.DictionaryArray = column.chunk(0)
        return chunk
    combined: pa.DictionaryArray = column.combine_chunks()
    return combined


def _numbers(table: pa.Table, name: str) -> npt.NDArray[Any]:
    col = table.column(name)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return np.asarray(col.to_numpy())


def decode_metric_arrays(values: Sequence[bytes], *, per_event: bool = False
                         ) -> tuple[MetricArrays, list[PoisonRecord]]:
    """Decode a poll straight into the arrays aggregation needs; bad records set aside.

    With ``per_event`` a bad event is set aside alone (see ``decode_records``).
    """
    decoded = decode_records(values, METRIC_COLUMNS, per_event=per_event)
    t = decoded.table
    arrays = MetricArrays(
        project_id=_codes(t, "project_id"),
        api_key=_codes(t, "api_key"),
        endpoint=_codes(t, "endpoint"),
        method=_codes(t, "method"),
        batch_id=_codes(t, "batch_id"),
        batch_index=_numbers(t, "batch_index").astype(np.int64, copy=False),
        timestamp_us=_numbers(t, "timestamp").astype(np.int64, copy=False),
        received_at_us=_numbers(t, "received_at").astype(np.int64, copy=False),
        status_code=_numbers(t, "status_code").astype(np.int16, copy=False),
        latency_ms=_numbers(t, "latency_ms").astype(np.float64, copy=False),
        request_bytes=_numbers(t, "request_bytes").astype(np.int64, copy=False),
        response_bytes=_numbers(t, "response_bytes").astype(np.int64, copy=False),
        positions=decoded.row_positions(),
    )
    return arrays, decoded.poison
