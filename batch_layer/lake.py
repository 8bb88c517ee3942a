"""The lake writer's side of the lake: opening it, atomic file commits, retention.

The layout, the committed-file rule and the schema are the shared contract in
``schemas.lake`` (re-exported here for the batch layer). Locally a file is written under
a hidden temporary name, fsynced, renamed, and its folder fsynced; on S3 an object only
becomes visible when its upload completes, so it is written under its final key directly.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import date, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from batch_layer.settings import BatchSettings
from schemas.lake import (
    LAKE_ARROW_SCHEMA,
    QUARANTINE_ARROW_SCHEMA,
    QUARANTINE_DIR,
    committed_files,
    data_file_name,
    day_dir,
    lake_days,
    open_lake_root,
    partition_dir,
    project_from_dir,
)
from schemas.lake import LakeRoot as Lake

__all__ = [
    "LAKE_ARROW_SCHEMA", "QUARANTINE_ARROW_SCHEMA", "Lake", "apply_retention",
    "committed_files", "data_file_name", "delete_file", "expired_days", "lake_days",
    "open_lake", "partition_dir", "project_from_dir", "read_json", "write_json_atomic",
    "write_parquet_atomic",
]


def open_lake(settings: BatchSettings) -> Lake:
    """The lake named by the settings: a local folder (created) or an S3 bucket prefix."""
    return open_lake_root(settings.lake, settings.state.state_dir)


def write_parquet_atomic(lake: Lake, path: str, table: pa.Table, compression_level: int) -> None:
    """Make ``table`` durable at ``path``; readers never see a partial file."""
    parent = path.rsplit("/", 1)[0]
    lake.fs.create_dir(parent, recursive=True)
    if not lake.is_local:
        with lake.fs.open_output_stream(path) as sink:
            _write(table, sink, compression_level)
        return
    tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as handle:
            _write(table, handle, compression_level)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(parent)


# Columns whose values repeat (the record format's dictionary columns among them, whose
# codes Parquet then takes as they are). Unique ones (event ids, times, sizes, latencies)
# would only fill a dictionary page and fall back.
_DICTIONARY_COLUMNS: Final = (
    "project_id", "method", "path", "endpoint", "status_code", "api_key", "ip", "user_agent",
    "country", "function", "tags", "kafka_partition", "batch_id",
)


def _write(table: pa.Table, sink: Any, compression_level: int) -> None:
    # No Arrow schema stored: the file's types are the Parquet logical ones, which read
    # back as LAKE_ARROW_SCHEMA whether a column was dictionary-encoded in memory or not.
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=compression_level,
        row_group_size=1_000_000,
        use_dictionary=[n for n in _DICTIONARY_COLUMNS if n in table.column_names],
        store_schema=False,
    )


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(lake: Lake, path: str, payload: dict[str, Any]) -> None:
    """Small durable JSON documents (roll intents), same commit rule as data files."""
    data = json.dumps(payload, sort_keys=True).encode()
    parent = path.rsplit("/", 1)[0]
    lake.fs.create_dir(parent, recursive=True)
    if not lake.is_local:
        with lake.fs.open_output_stream(path) as sink:
            sink.write(data)
        return
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(parent)


def read_json(lake: Lake, path: str) -> dict[str, Any] | None:
    try:
        with lake.fs.open_input_stream(path) as source:
            loaded: dict[str, Any] = json.loads(source.read())
            return loaded
    except FileNotFoundError:
        return None


def delete_file(lake: Lake, path: str) -> None:
    try:
        lake.fs.delete_file(path)
    except FileNotFoundError:
        pass


def expired_days(days: list[date], today: date, retention_days: int) -> list[date]:
    """Days strictly older than the retention window (today minus ``retention_days``)."""
    cutoff = today - timedelta(days=retention_days)
    return sorted(d for d in days if d < cutoff)


def apply_retention(lake: Lake, today: date, retention_days: int) -> list[date]:
    """Delete whole ``dt=`` partitions (data and quarantine) past retention; return them."""
    expired = expired_days(list(lake_days(lake)), today, retention_days)
    for day in expired:
        for base in (lake.path(day_dir(day)), lake.path(QUARANTINE_DIR, day_dir(day))):
            try:
                lake.fs.delete_dir(base)
            except FileNotFoundError:
                pass
    return expired
