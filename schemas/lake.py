"""The Parquet lake's contract: where it is, how it is laid out, what is committed, its schema.

The lake writer writes it, the billing job and the query API read it; all three take the
names below from here, so a project id of any text (space, ``:``, ``@``, ``/``, unicode)
lands in one folder and is found there again. Layout under the lake root (a local folder
or ``s3://bucket/prefix``)::

    dt=YYYY-MM-DD/project=<percent-encoded project id>/part-<partition>-<first offset>.parquet
    _quarantine/dt=YYYY-MM-DD/part-<partition>-<first offset>.parquet   (refused records)
    _lake_writer/pending/<percent-encoded topic>/<partition>.json      (roll intents)

``dt`` is the UTC day of the event's timestamp. The project id is percent-encoded with no
safe characters (``urllib.parse.quote(id, safe="")``): the folder name is never a path
separator, a dot folder or a glob pattern. Committed data is a file ending in ``.parquet``
under ``dt=`` whose path below the root has no part starting with ``.`` or ``_``
(temporary uploads and internal files). The one lake setting is ``TURNSTILE_LAKE_URI``
(default ``<TURNSTILE_STATE_DIR>/lake``), with ``TURNSTILE_LAKE_S3_*`` for an S3 endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.arrow import EVENT_ARROW_SCHEMA

# The lake's Arrow (and Parquet) schema: the event plus where it came from. The Kafka
# coordinates make any duplicate provable (same event_id at two offsets); ``batch_id`` and
# ``batch_index`` (the event's position in its HTTP batch) tell a retried batch, which the
# stream also drops, from an independent resend, event by event.
LAKE_ARROW_SCHEMA: Final = pa.schema([
    *EVENT_ARROW_SCHEMA,
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("batch_index", pa.int32(), nullable=False),
])
QUARANTINE_ARROW_SCHEMA: Final = pa.schema([
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("project_id", pa.string()),  # from the record, or else from its key
    pa.field("event_id", pa.string()),  # set when one event of a record is refused
])
# The copy of a duplicated event every reader keeps: first received, then lowest Kafka
# coordinates, so re-runs and both readers choose the same one.
DEDUPE_KEY: Final = ("project_id", "event_id")
DEDUPE_ORDER: Final = ("received_at", "kafka_partition", "kafka_offset")

DATA_SUFFIX: Final = ".parquet"
QUARANTINE_DIR: Final = "_quarantine"
WRITER_DIR: Final = "_lake_writer"
_DAY_PREFIX: Final = "dt="
_PROJECT_PREFIX: Final = "project="
_DT_DIR: Final = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


class LakeSettings(BaseSettings):
    """Where the lake is (``TURNSTILE_LAKE_URI``); every service that touches it nests this."""

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_LAKE_", frozen=True, extra="ignore")

    uri: str = ""  # a folder, file:///…, or s3://bucket/prefix; empty = <state_dir>/lake
    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:9000 for MinIO / moto
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None

    def resolved_uri(self, state_dir: Path) -> str:
        return self.uri or str((state_dir / "lake").resolve())


@dataclass(frozen=True)
class LakeRoot:
    """A lake root on a filesystem; ``root`` is a filesystem path (no scheme)."""

    fs: pafs.FileSystem
    root: str
    uri: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])


def open_lake_root(settings: LakeSettings, state_dir: Path, *, create: bool = True) -> LakeRoot:
    """The lake the settings name: a local folder (made when ``create``) or an S3 prefix."""
    uri = settings.resolved_uri(state_dir)
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
        return LakeRoot(fs=fs, root=f"{parsed.netloc}{parsed.path}".rstrip("/"), uri=uri)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"unsupported lake URI scheme {parsed.scheme!r} (folder or s3://)")
    root = Path(parsed.path if parsed.scheme == "file" else uri).resolve()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return LakeRoot(fs=pafs.LocalFileSystem(), root=str(root), uri=uri)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


# --- names -------------------------------------------------------------------------------

def day_dir(day: date) -> str:
    return f"{_DAY_PREFIX}{day.isoformat()}"


def project_dir(project_id: str) -> str:
    """``project=<id>`` with the id percent-encoded (UTF-8), no character left as is."""
    return f"{_PROJECT_PREFIX}{quote(project_id, safe='')}"


def project_from_dir(name: str) -> str:
    """The project id a ``project=`` folder holds (inverse of ``project_dir``)."""
    return unquote(name.removeprefix(_PROJECT_PREFIX), errors="strict")


def partition_dir(day: date, project_id: str) -> str:
    """Hive-style folder of one (day, project), relative to the lake root."""
    return f"{day_dir(day)}/{project_dir(project_id)}"


def data_file_name(kafka_partition: int, first_offset: int) -> str:
    """Deterministic name: replaying the same offset range rewrites the same file."""
    return f"part-{kafka_partition:04d}-{first_offset:020d}{DATA_SUFFIX}"


def quarantine_path(day: date, file_name: str) -> str:
    return f"{QUARANTINE_DIR}/{day_dir(day)}/{file_name}"


def intent_path(topic: str, kafka_partition: int) -> str:
    return f"{WRITER_DIR}/pending/{quote(topic, safe='')}/{kafka_partition}.json"


def day_of_dir(name: str) -> date | None:
    match = _DT_DIR.match(name)
    return date.fromisoformat(match.group(1)) if match else None


def days_of(start: datetime, end: datetime) -> Iterator[date]:
    """The UTC days a half-open range [start, end) touches."""
    day, last = start.date(), (end - timedelta(microseconds=1)).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


# --- what is committed -------------------------------------------------------------------

def is_committed(info: pafs.FileInfo, base: str) -> bool:
    """A data file readers may use: ``.parquet``, nothing hidden or internal below ``base``."""
    if info.type != pafs.FileType.File or not info.path.endswith(DATA_SUFFIX):
        return False
    relative = info.path[len(base):].lstrip("/")
    return not any(part.startswith((".", "_")) for part in relative.split("/"))


def _committed(lake: LakeRoot, base: str, recursive: bool) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(base, recursive=recursive, allow_not_found=True)
    return sorted((i for i in lake.fs.get_file_info(selector) if is_committed(i, base)),
                  key=lambda i: i.path)


def committed_files(lake: LakeRoot, day: date) -> list[str]:
    """Committed data files of one day, every project, sorted."""
    return [i.path for i in _committed(lake, lake.path(day_dir(day)), recursive=True)]


def project_files(lake: LakeRoot, project_id: str, day: date,
                  modified_after: datetime | None = None) -> list[str]:
    """Committed data files of one (project, day), sorted.

    With ``modified_after``, only those last written at or after it (older ones cannot
    hold later events).
    """
    infos = _committed(lake, lake.path(partition_dir(day, project_id)), recursive=False)
    if modified_after is not None:
        infos = [i for i in infos if i.mtime is not None and i.mtime >= modified_after]
    return [i.path for i in infos]


def lake_days(lake: LakeRoot) -> Iterator[date]:
    """The ``dt=`` partitions present in the lake."""
    selector = pafs.FileSelector(lake.root, recursive=False, allow_not_found=True)
    for info in lake.fs.get_file_info(selector):
        day = day_of_dir(info.base_name)
        if info.type == pafs.FileType.Directory and day is not None:
            yield day


def readable(lake: LakeRoot) -> bool:
    """The root can be listed.

    A local root not made yet under an existing folder counts: a new stack has no lake
    before the writer's first roll.
    """
    try:
        lake.fs.get_file_info(pafs.FileSelector(lake.root, recursive=False,
                                                allow_not_found=True))
    except OSError:
        return False
    if lake.is_local and not Path(lake.root).exists():
        return Path(lake.root).parent.is_dir()
    return True
