"""``python -m schemas.records``: rewrite the published schema file from the code."""

from schemas.records.schema import SCHEMA_FILE, render_schema_file

SCHEMA_FILE.write_bytes(render_schema_file())
print(SCHEMA_FILE)  # noqa: T201
