"""Kafka record format v2: many events of one HTTP batch per record, as Arrow IPC.

``schemas/RECORD_FORMAT.md`` documents it; ``schemas/event_record_v2.arrow.json`` is the
published schema. Encoding groups a batch's events by the partition Kafka's default
partitioner gives their key; decoding reads a whole poll in one call and sets bad records
aside with the reason.
"""

from schemas.records.decode import (
    CANONICAL_PREFIX,
    DECODED_SCHEMA,
    DecodedRecords,
    InvalidRecord,
    decode_records,
    event_value,
    read_record,
)
from schemas.records.encode import (
    KeyPartitioner,
    V2Record,
    encode_columns,
    encode_event_records,
    event_record_columns,
    write_record,
)
from schemas.records.metrics import METRIC_COLUMNS, MetricArrays, decode_metric_arrays
from schemas.records.murmur2 import murmur2, partitions_for
from schemas.records.schema import (
    EVENT_RECORD_V2_SCHEMA,
    EVENTS_TOPIC_V2,
    FORMAT_KEY,
    FORMAT_VERSION,
    SCHEMA_FILE,
    load_schema_file,
)

__all__ = [
    "CANONICAL_PREFIX",
    "DECODED_SCHEMA",
    "EVENTS_TOPIC_V2",
    "EVENT_RECORD_V2_SCHEMA",
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "METRIC_COLUMNS",
    "SCHEMA_FILE",
    "DecodedRecords",
    "InvalidRecord",
    "KeyPartitioner",
    "MetricArrays",
    "V2Record",
    "decode_metric_arrays",
    "decode_records",
    "encode_columns",
    "encode_event_records",
    "event_value",
    "event_record_columns",
    "load_schema_file",
    "murmur2",
    "partitions_for",
    "read_record",
    "write_record",
]
