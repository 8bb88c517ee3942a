"""The values that travel between the steps of the dataflow.

Every item is a batch held in columns (numpy arrays, or lists of strings aligned with
them): Bytewax adds a fixed cost per item, so items carry thousands of events or rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from schemas.codec import MetricColumns
from schemas.dead_letters import DeadLetter

if TYPE_CHECKING:
    from speed_layer.sketches import DigestParts

WINDOW_US = 60_000_000
"""Width of a window: one minute of event time, in microseconds."""

Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Objects = npt.NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class ShardBatch:
    """One poll of one Kafka partition, decoded; arrays are aligned with ``columns`` rows.

    Rows are events; ``offsets`` and ``produced_ms`` are those of each row's record.
    """

    topic: str
    partition: int
    next_offset: int
    columns: MetricColumns
    offsets: Int64s
    batch_ids: Objects  # the batch id (str) of each row
    produced_ms: Int64s  # Kafka record timestamp (CreateTime) per row
    dead_letters: tuple[DeadLetter, ...] = ()

    def __len__(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True, slots=True)
class MetricRows:
    """Full state of some minute windows: what ``metrics_1m`` rows must become."""

    bucket_us: Int64s
    project_id: Objects  # str per row
    api_key: Objects
    endpoint: Objects
    method: Objects
    status_class: npt.NDArray[np.int16]
    request_count: Int64s
    error_count: Int64s
    server_error_count: Int64s
    latency_sum: Floats
    latency_min: Floats
    latency_max: Floats
    bytes_in: Int64s
    bytes_out: Int64s
    digest: DigestParts  # the latency sketch of each row, printed by the writer

    def __len__(self) -> int:
        return len(self.bucket_us)


@dataclass(frozen=True, slots=True)
class LateRows:
    """Events later than the allowed lateness, one row each (they are rare)."""

    topic: str
    partition: int
    offset: Int64s
    project_id: list[str]
    api_key: list[str]
    bucket_us: Int64s

    def __len__(self) -> int:
        return len(self.offset)


@dataclass(frozen=True, slots=True)
class Emission:
    """What one shard hands to the sink at one moment."""

    partition: int
    metrics: MetricRows | None = None
    late: LateRows | None = None
    duplicates: int = 0
    extra: dict[str, int] = field(default_factory=dict)
