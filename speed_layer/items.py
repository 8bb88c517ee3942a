"""The values that travel between the steps of the dataflow.

Every item is a batch held in columns (numpy arrays and Arrow arrays): Bytewax adds a
fixed cost per item, so items carry thousands of events or rows. Strings stay Arrow
(dictionary codes from decode, string arrays in emissions): no Python object per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from schemas.dead_letters import DeadLetter
from schemas.records import MetricArrays

WINDOW_US = 60_000_000
"""Width of a window: one minute of event time, in microseconds."""

Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Objects = npt.NDArray[np.object_]

METRIC_ROWS_SCHEMA: Final = pa.schema([
    ("bucket_us", pa.int64()),
    ("project_id", pa.string()),
    ("api_key", pa.string()),
    ("endpoint", pa.string()),
    ("method", pa.string()),
    ("status_class", pa.int16()),
    ("request_count", pa.int64()),
    ("error_count", pa.int64()),
    ("server_error_count", pa.int64()),
    ("latency_sum", pa.float64()),
    ("latency_min", pa.float64()),
    ("latency_max", pa.float64()),
    ("bytes_in", pa.int64()),
    ("bytes_out", pa.int64()),
    # The latency sketch of each row as centroids (sorted by mean, positive integer
    # counts); the writer thread prints them as tdigest text in bulk (sketches.pg_texts).
    ("digest_means", pa.list_(pa.float64())),
    ("digest_counts", pa.list_(pa.int64())),
])
MetricRows: TypeAlias = pa.RecordBatch
_COMPRESSION: Final = b"digest_compression"


def metric_rows_schema(compression: int) -> pa.Schema:
    """The schema of emitted rows; their digests' compression rides in its metadata."""
    return METRIC_ROWS_SCHEMA.with_metadata({_COMPRESSION: str(compression).encode()})


def digest_compression(rows: MetricRows) -> int:
    value: bytes = (rows.schema.metadata or {})[_COMPRESSION]
    return int(value)

"""Full state of some minute windows (``METRIC_ROWS_SCHEMA``): what their rows become."""

LATE_ROWS_SCHEMA: Final = pa.schema([
    ("kafka_offset", pa.int64()),
    ("project_id", pa.string()),
    ("api_key", pa.string()),
    ("bucket_us", pa.int64()),
])


@dataclass(frozen=True, slots=True)
class ShardBatch:
    """One poll of one Kafka partition, decoded; arrays are aligned with ``columns`` rows.

    Rows are events; ``offsets`` and ``produced_ms`` are those of each row's record.
    """

    topic: str
    partition: int
    next_offset: int
    columns: MetricArrays
    offsets: Int64s
    produced_ms: Int64s  # Kafka record timestamp (CreateTime) per row
    dead_letters: tuple[DeadLetter, ...] = ()

    def __len__(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True, slots=True)
class LateRows:
    """Events later than the allowed lateness (``LATE_ROWS_SCHEMA``, one row each)."""

    topic: str
    partition: int
    rows: pa.RecordBatch

    @property
    def offset(self) -> Int64s:
        out: Int64s = self.rows.column("kafka_offset").to_numpy()
        return out

    @property
    def project_id(self) -> list[str]:
        out: list[str] = self.rows.column("project_id").to_pylist()
        return out

    @property
    def api_key(self) -> list[str]:
        out: list[str] = self.rows.column("api_key").to_pylist()
        return out

    @property
    def bucket_us(self) -> Int64s:
        out: Int64s = self.rows.column("bucket_us").to_numpy()
        return out

    def __len__(self) -> int:
        return int(self.rows.num_rows)


@dataclass(frozen=True, slots=True)
class Emission:
    """What one shard hands to the sink at one moment."""

    partition: int
    metrics: MetricRows | None = None
    late: LateRows | None = None
    duplicates: int = 0
    extra: dict[str, int] = field(default_factory=dict)
