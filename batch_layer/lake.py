"""The Parquet lake: its layout, atomic file commits, listing of committed files, retention.

Layout under the lake root (a local folder or ``s3://bucket/prefix``)::

    dt=YYYY-MM-DD/project=<project_id>/part-<kafka partition>-<first offset of roll>.parquet
    _quarantine/dt=YYYY-MM-DD/part-<kafka partition>-<first offset>.parquet   (refused)
    _lake_writer/pending/<topic>/<kafka partition>.json                       (roll intents)

``dt`` is the UTC day of the event's timestamp. Only names ending in ``.parquet`` outside
``_``/``.`` folders are committed data. Locally a file is written under a hidden temporary
name, fsynced, renamed, and its folder fsynced; on S3 an object only becomes visible when
its upload completes, so it is written under its final key directly.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from batch_layer.settings import BatchSettings
from schemas.arrow import EVENT_ARROW_SCHEMA

# The lake's Parquet schema: the event plus where it came from in Kafka, which makes any
# duplicate provable (same event_id at two offsets) and lets reconciliation tell a retried
# batch (same batch id, which the stream also drops) from an independent resend.
LAKE_ARROW_SCHEMA: Final = EVENT_ARROW_SCHEMA.append(
    pa.field("kafka_partition", pa.int32(), nullable=False)
).append(pa.field("kafka_offset", pa.int64(), nullable=False)).append(
    pa.field("batch_id", pa.string())
)
QUARANTINE_ARROW_SCHEMA: Final = pa.schema(
    [
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("project_id", pa.string()),  # from the record, or else from its key
        pa.field("event_id", pa.string()),  # set when one event of a record is refused
    ]
)
_DT_DIR: Final = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Lake:
    """A lake root on a filesystem; ``root`` is a filesystem path (no scheme)."""

    fs: pafs.FileSystem
    root: str
    uri: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])


def open_lake(settings: BatchSettings) -> Lake:
    """The lake named by the settings: a local folder (created) or an S3 bucket prefix."""
    uri = settings.resolved_lake_uri()
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        endpoint = urlparse(settings.s3_endpoint_url) if settings.s3_endpoint_url else None
        fs = pafs.S3FileSystem(
            region=settings.s3_region,
            access_key=_secret(settings.s3_access_key),
            secret_key=_secret(settings.s3_secret_key),
            endpoint_override=endpoint.netloc if endpoint else None,
            scheme=endpoint.scheme if endpoint else "https",
            allow_bucket_creation=False,
        )
        return Lake(fs=fs, root=f"{parsed.netloc}{parsed.path}".rstrip("/"), uri=uri)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"unsupported lake URI scheme {parsed.scheme!r} (folder or s3://)")
    root = Path(parsed.path if parsed.scheme == "file" else uri).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return Lake(fs=pafs.LocalFileSystem(), root=str(root), uri=uri)


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def partition_dir(day: date, project_id: str) -> str:
    """Hive-style folder of one (day, project); the project id is percent-encoded."""
    return f"dt={day.isoformat()}/project={quote(project_id, safe='')}"


def project_from_dir(name: str) -> str:
    return unquote(name.removeprefix("project="))


def data_file_name(kafka_partition: int, first_offset: int) -> str:
    """Deterministic name: replaying the same offset range rewrites the same file."""
    return f"part-{kafka_partition:04d}-{first_offset:020d}.parquet"


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


def _write(table: pa.Table, sink: Any, compression_level: int) -> None:
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=compression_level,
        row_group_size=1_000_000,
        use_dictionary=True,
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


def _is_committed(info: pafs.FileInfo, base: str) -> bool:
    if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
        return False
    relative = info.path[len(base):].lstrip("/")
    return not any(part.startswith((".", "_")) for part in relative.split("/"))


def committed_files(lake: Lake, day: date) -> list[str]:
    """Committed data files of one day (temporary and internal files excluded), sorted."""
    base = lake.path(f"dt={day.isoformat()}")
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    return sorted(i.path for i in lake.fs.get_file_info(selector) if _is_committed(i, base))


def lake_days(lake: Lake) -> Iterator[date]:
    """The ``dt=`` partitions present in the lake."""
    selector = pafs.FileSelector(lake.root, recursive=False, allow_not_found=True)
    for info in lake.fs.get_file_info(selector):
        match = _DT_DIR.match(info.base_name)
        if info.type == pafs.FileType.Directory and match:
            yield date.fromisoformat(match.group(1))


def expired_days(days: list[date], today: date, retention_days: int) -> list[date]:
    """Days strictly older than the retention window (today minus ``retention_days``)."""
    cutoff = today - timedelta(days=retention_days)
    return sorted(d for d in days if d < cutoff)


def apply_retention(lake: Lake, today: date, retention_days: int) -> list[date]:
    """Delete whole ``dt=`` partitions (data and quarantine) past retention; return them."""
    expired = expired_days(list(lake_days(lake)), today, retention_days)
    for day in expired:
        for base in (lake.path(f"dt={day.isoformat()}"),
                     lake.path("_quarantine", f"dt={day.isoformat()}")):
            try:
                lake.fs.delete_dir(base)
            except FileNotFoundError:
                pass
    return expired
