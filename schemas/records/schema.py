"""Record format v2: the Arrow schema of a Kafka record, and its published file.

One record is one Arrow IPC stream whose schema carries ``turnstile.format = "2"``. The
columns are ``schemas.arrow.EVENT_ARROW_SCHEMA``'s (so the lake writes them to Parquet as
they are), with repetitive strings dictionary-encoded, plus the HTTP batch's id and each
event's position in it. ``python -m schemas.records`` rewrites the published file
``schemas/event_record_v2.arrow.json``; a unit test keeps it equal to this module.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Final

import orjson
import pyarrow as pa

from schemas.arrow import EVENT_ARROW_SCHEMA
from schemas.topics import EVENTS_TOPIC

FORMAT_KEY: Final = "turnstile.format"
FORMAT_VERSION: Final = "2"
EVENTS_TOPIC_V2: Final = EVENTS_TOPIC

# Every dictionary column has int16 indices, so a record holds at most this many events
# (the encoder splits larger groups; it also splits by size, see ``encode``).
MAX_EVENTS_PER_RECORD: Final = 32_767
DICTIONARY: Final = pa.dictionary(pa.int16(), pa.string())
# Strings that repeat inside one HTTP batch by nature. ``event_id`` is unique, ``path``
# and ``ip`` mostly so (measured: dictionary-encoding them saved ~1 % after lz4 and cost
# more to encode than it saved).
DICTIONARY_COLUMNS: Final = (
    "project_id", "method", "endpoint", "api_key", "user_agent", "country", "function",
    "batch_id",
)


def _v2_fields() -> list[pa.Field]:
    fields = [
        pa.field(f.name, DICTIONARY, nullable=f.nullable) if f.name in DICTIONARY_COLUMNS
        else f
        for f in EVENT_ARROW_SCHEMA
    ]
    # The batch id is one value per HTTP batch: as a one-entry dictionary it costs two
    # bytes an event and keeps the schema (and so its bytes) identical in every record.
    fields.append(pa.field("batch_id", DICTIONARY, nullable=False))
    fields.append(pa.field("batch_index", pa.int32(), nullable=False))
    return fields


EVENT_RECORD_V2_SCHEMA: Final = pa.schema(
    _v2_fields(), metadata={FORMAT_KEY: FORMAT_VERSION}
)
V2_COLUMNS: Final = tuple(EVENT_RECORD_V2_SCHEMA.names)
NON_NULL_COLUMNS: Final = tuple(f.name for f in EVENT_RECORD_V2_SCHEMA if not f.nullable)
STRING_COLUMNS: Final = tuple(
    f.name for f in EVENT_RECORD_V2_SCHEMA
    if pa.types.is_string(f.type) or pa.types.is_dictionary(f.type)
)

SCHEMA_FILE: Final = Path(__file__).resolve().parent.parent / "event_record_v2.arrow.json"


def _type_json(t: pa.DataType) -> dict[str, Any]:
    """A pyarrow type as plain JSON, in the type names of the Arrow columnar spec."""
    if pa.types.is_dictionary(t):
        return {"name": "dictionary", "indexType": _type_json(t.index_type),
                "valueType": _type_json(t.value_type), "ordered": t.ordered}
    if pa.types.is_timestamp(t):
        return {"name": "timestamp", "unit": t.unit, "timezone": t.tz}
    if pa.types.is_map(t):
        return {"name": "map", "keyType": _type_json(t.key_type),
                "itemType": _type_json(t.item_type), "keysSorted": t.keys_sorted}
    if pa.types.is_string(t):
        return {"name": "utf8"}
    if pa.types.is_floating(t):
        return {"name": "floatingpoint", "bitWidth": t.bit_width}
    if pa.types.is_integer(t):
        return {"name": "int", "bitWidth": t.bit_width, "isSigned": pa.types.is_signed_integer(t)}
    raise TypeError(f"no JSON form for Arrow type {t}")


def schema_json(schema: pa.Schema = EVENT_RECORD_V2_SCHEMA) -> dict[str, Any]:
    """The schema as JSON for other tools; the IPC form is in ``ipc_schema_base64``."""
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    return {
        "title": "Turnstile Kafka record, format v2 (one Arrow IPC stream per record)",
        "metadata": meta,
        "fields": [
            {"name": f.name, "nullable": f.nullable, "type": _type_json(f.type)}
            for f in schema
        ],
        "ipc_schema_base64": _ipc_schema_b64(schema),
    }


def _ipc_schema_b64(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def render_schema_file() -> bytes:
    return orjson.dumps(schema_json(), option=orjson.OPT_INDENT_2) + b"\n"


def load_schema_file(path: Path = SCHEMA_FILE) -> pa.Schema:
    """The Arrow schema from the published file (its IPC form), for tools and tests."""
    doc = orjson.loads(path.read_bytes())
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(doc["ipc_schema_base64"])))
