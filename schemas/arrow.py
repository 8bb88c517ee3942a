"""The Arrow (and so Parquet) schema of an event, derived from ``EventRecord``.

Times become proper UTC timestamps so DuckDB, Spark or pandas read them without a cast;
every other column keeps the record's field name.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

_TS: Final = pa.timestamp("us", tz="UTC")

EVENT_ARROW_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("project_id", pa.string(), nullable=False),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("received_at", _TS, nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("endpoint", pa.string(), nullable=False),
        pa.field("status_code", pa.int16(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("request_bytes", pa.int64(), nullable=False),
        pa.field("response_bytes", pa.int64(), nullable=False),
        pa.field("api_key", pa.string(), nullable=False),
        pa.field("ip", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("country", pa.string()),
        pa.field("function", pa.string()),
        pa.field("tags", pa.map_(pa.string(), pa.string())),
    ]
)

# Arrow column → EventRecord attribute, where the names differ.
ARROW_SOURCE_FIELD: Final = {"timestamp": "timestamp_us", "received_at": "received_at_us"}
