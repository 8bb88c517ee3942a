"""Format v1 (one JSON record per event), kept only to measure v2 against it.

No Turnstile component reads or writes v1 any more (it was a pre-release format); this is
the old ``schemas.codec`` JSON codec, so ``benchmarks.record_format`` can still report the
v1 column of its tables from the same events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeVar

import msgspec
import numpy as np

from schemas.codec import MetricColumns, PoisonRecord
from schemas.event import ANONYMOUS_API_KEY, RECORD_FORMAT_VERSION, EventRecord

_ENCODER: Final = msgspec.json.Encoder()
_RECORDS_DECODER: Final = msgspec.json.Decoder(list[EventRecord])
_RECORD_DECODER: Final = msgspec.json.Decoder(EventRecord)


class MetricFields(
    msgspec.Struct, tag_field="v", tag=RECORD_FORMAT_VERSION, kw_only=True, gc=False
):
    """The projection of a record that aggregation needs; other fields are skipped unparsed."""

    project_id: str
    timestamp_us: int
    received_at_us: int
    method: str
    endpoint: str
    status_code: int
    latency_ms: float
    request_bytes: int = 0
    response_bytes: int = 0
    api_key: str = ANONYMOUS_API_KEY
    batch_id: str = ""
    batch_index: int = -1


_METRICS_DECODER: Final = msgspec.json.Decoder(list[MetricFields])
_METRIC_DECODER: Final = msgspec.json.Decoder(MetricFields)

T = TypeVar("T")


def encode_record(record: EventRecord) -> bytes:
    return _ENCODER.encode(record)


def encode_records(records: Sequence[EventRecord]) -> list[bytes]:
    """Encode a batch; one JSON document per record."""
    encode = _ENCODER.encode
    return [encode(r) for r in records]


def _decode_all(
    values: Sequence[bytes],
    many: msgspec.json.Decoder[list[T]],
    one: msgspec.json.Decoder[T],
) -> tuple[list[T], list[int], list[PoisonRecord]]:
    try:
        items = many.decode(b"[" + b",".join(values) + b"]")
        return items, list(range(len(items))), []
    except msgspec.DecodeError:
        pass
    good: list[T] = []
    positions: list[int] = []
    poison: list[PoisonRecord] = []
    for i, value in enumerate(values):
        try:
            good.append(one.decode(value))
            positions.append(i)
        except msgspec.DecodeError as exc:
            poison.append(PoisonRecord(position=i, reason=str(exc)))
    return good, positions, poison


def decode_records(values: Sequence[bytes]) -> tuple[list[EventRecord], list[PoisonRecord]]:
    """Decode full records (for the lake writer and tools); poison records set aside."""
    records, _, poison = _decode_all(values, _RECORDS_DECODER, _RECORD_DECODER)
    return records, poison


def decode_metric_columns(
    values: Sequence[bytes],
) -> tuple[MetricColumns, list[PoisonRecord]]:
    """Decode a batch straight into the columns aggregation needs."""
    rows, positions, poison = _decode_all(values, _METRICS_DECODER, _METRIC_DECODER)
    n = len(rows)
    cols = MetricColumns(
        project_id=[r.project_id for r in rows],
        api_key=[r.api_key for r in rows],
        endpoint=[r.endpoint for r in rows],
        method=[r.method for r in rows],
        batch_id=[r.batch_id for r in rows],
        batch_index=np.fromiter((r.batch_index for r in rows), np.int64, n),
        timestamp_us=np.fromiter((r.timestamp_us for r in rows), np.int64, n),
        received_at_us=np.fromiter((r.received_at_us for r in rows), np.int64, n),
        status_code=np.fromiter((r.status_code for r in rows), np.int16, n),
        latency_ms=np.fromiter((r.latency_ms for r in rows), np.float64, n),
        request_bytes=np.fromiter((r.request_bytes for r in rows), np.int64, n),
        response_bytes=np.fromiter((r.response_bytes for r in rows), np.int64, n),
        positions=np.asarray(positions, dtype=np.int64),
    )
    return cols, poison
