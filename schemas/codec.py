"""What every consumer of the events topic shares: the record key, poison records, columns.

The record format itself (v2, many events per record as Arrow IPC) lives in
``schemas.records`` and is documented in ``schemas/RECORD_FORMAT.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    """A record, or one event of it (``row``), that could not be decoded: where and why.

    ``position`` is the record's position in the values given; ``row`` is the event's row
    inside that record, or None when the whole record is refused.
    """

    position: int
    reason: str
    row: int | None = None


@dataclass(frozen=True, slots=True)
class MetricColumns:
    """Decoded batch as columns; ``positions`` maps each row back to its record's position."""

    project_id: list[str]
    api_key: list[str]
    endpoint: list[str]
    method: list[str]
    batch_id: list[str]
    batch_index: npt.NDArray[np.int64]
    timestamp_us: npt.NDArray[np.int64]
    received_at_us: npt.NDArray[np.int64]
    status_code: npt.NDArray[np.int16]
    latency_ms: npt.NDArray[np.float64]
    request_bytes: npt.NDArray[np.int64]
    response_bytes: npt.NDArray[np.int64]
    positions: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.timestamp_us)


def record_key(project_id: str, api_key: str) -> bytes:
    """The Kafka key: all events of one consumer of one project land on one partition."""
    return f"{project_id}:{api_key}".encode()
