"""The Kafka record codec: the only place where bytes become events and events bytes.

Record format v1 (documented in ``schemas/RECORD_FORMAT.md``, JSON Schema in
``schemas/event_record.schema.json``): one UTF-8 JSON object per Kafka record, the fields of
``EventRecord`` with ``"v": 1``; key ``project_id:api_key``; header ``turnstile-batch-id``
(repeated in the body as ``batch_id``).

Decoding is batch-at-a-time: the values of a consumed batch are joined into one JSON
array and decoded by msgspec in a single call into column arrays. Only if that fails
(a poison record) is the batch decoded record by record, to set the bad ones aside with
the reason while keeping every good one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from schemas.arrow import ARROW_SOURCE_FIELD, EVENT_ARROW_SCHEMA
from schemas.event import ANONYMOUS_API_KEY, RECORD_FORMAT_VERSION, EventRecord
from schemas.topics import BATCH_ID_HEADER

_ENCODER: Final = msgspec.json.Encoder()
_RECORDS_DECODER: Final = msgspec.json.Decoder(list[EventRecord])
_RECORD_DECODER: Final = msgspec.json.Decoder(EventRecord)


# The numpy columns the projection fills: a value beyond them is a poison record (set
# aside by the decoder), not an OverflowError that would stop the consumer.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Int16 = Annotated[int, msgspec.Meta(ge=-(2**15), le=2**15 - 1)]


class MetricFields(
    msgspec.Struct, tag_field="v", tag=RECORD_FORMAT_VERSION, kw_only=True, gc=False
):
    """The projection of a record that aggregation needs; other fields are skipped unparsed."""

    project_id: str
    timestamp_us: Int64
    received_at_us: Int64
    method: str
    endpoint: str
    status_code: Int16
    latency_ms: float
    request_bytes: Int64 = 0
    response_bytes: Int64 = 0
    api_key: str = ANONYMOUS_API_KEY
    batch_id: str = ""
    batch_index: Int64 = -1


_METRICS_DECODER: Final = msgspec.json.Decoder(list[MetricFields])
_METRIC_DECODER: Final = msgspec.json.Decoder(MetricFields)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    """A record that could not be decoded: its position in the batch and why."""

    position: int
    reason: str


@dataclass(frozen=True, slots=True)
class MetricColumns:
    """Decoded batch as columns; ``positions`` maps each row back to its batch position."""

    project_id: list[str]
    api_key: list[str]
    endpoint: list[str]
    method: list[str]
    batch_id: list[str]  # "" where the record does not carry one (older writers)
    batch_index: npt.NDArray[np.int64]  # -1 where the record does not carry one
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


Headers = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None


def header_batch_id(headers: Headers) -> str:
    """The ``turnstile-batch-id`` header's value, or "" when there is none.

    Only for records written before the body carried ``batch_id``: reading a record's
    headers costs ~1 µs in confluent-kafka.
    """
    if not headers:
        return ""
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:  # the gateway puts it first: one step
        if name == BATCH_ID_HEADER and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return ""


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


def records_to_arrow(records: Sequence[EventRecord]) -> pa.Table:
    """Records as an Arrow table with ``EVENT_ARROW_SCHEMA`` (the lake's Parquet schema)."""
    columns = {}
    for name in EVENT_ARROW_SCHEMA.names:
        if name == "tags":
            columns[name] = [list(r.tags.items()) if r.tags else None for r in records]
        else:
            attr = ARROW_SOURCE_FIELD.get(name, name)
            columns[name] = [getattr(r, attr) for r in records]
    return pa.Table.from_pydict(columns, schema=EVENT_ARROW_SCHEMA)
