"""JSON Schema files for other tools (other-language agents).

The Kafka records are Arrow (format v2): their published schema is
``schemas/event_record_v2.arrow.json`` (``schemas.records.schema``).

Generated from the msgspec types, so they cannot drift: a unit test compares the committed
files with a fresh export, and ``python -m schemas.jsonschema`` rewrites them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import msgspec
import orjson

from schemas.event import IncomingEvent

SCHEMA_DIR: Final = Path(__file__).parent
SCHEMA_FILES: Final = {
    "incoming_event.schema.json": (IncomingEvent, "Event as posted by an agent to the gateway"),
}


def render(kind: type, title: str) -> bytes:
    schema: dict[str, Any] = msgspec.json.schema(kind)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **schema}
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    written = []
    for name, (kind, title) in SCHEMA_FILES.items():
        path = directory / name
        path.write_bytes(render(kind, title))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in export():
        print(p)  # noqa: T201
