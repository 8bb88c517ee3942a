"""Exact daily usage from the lake with DuckDB: dedupe on (project_id, event_id), tiers.

Deduplication without grouping every row by its 32-character id: one scan takes a 64-bit
``hash(project_id, event_id)`` per row, and a numpy sort finds the hashes seen more than once
(~1 % of rows, plus a rare collision). Only rows with such a hash are read again and ranked
by the exact strings, so a collision never merges two events; the extra copies'
contribution is subtracted from a plain aggregate. The kept copy is the first received
(then lowest Kafka partition/offset), so re-runs choose the same one.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.dataset as pads

from schemas.lake import DEDUPE_KEY, DEDUPE_ORDER, LAKE_ARROW_SCHEMA, committed_files
from schemas.lake import LakeRoot as Lake


@dataclass(frozen=True)
class TierRule:
    """An endpoint glob (``fnmatch`` syntax, case-sensitive) and the tier it bills as."""

    pattern: str
    tier: str


@dataclass(frozen=True)
class UsageRow:
    """Billing figures of one (project, api_key, day), plus what reconciliation needs."""

    project_id: str
    api_key: str
    day: date
    total_requests: int
    requests_by_tier: dict[str, int]
    error_count: int
    server_error_count: int
    bytes_in: int
    bytes_out: int
    raw_count: int = 0
    duplicates_removed: int = 0
    duplicates_in_stream: int = 0


@dataclass
class _Acc:
    tiers: dict[str, int] = field(default_factory=dict)
    figures: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0])


def tier_of(endpoint: str, rules: Sequence[TierRule], default: str) -> str:
    """The first rule whose pattern matches the endpoint names its tier."""
    for rule in rules:
        if fnmatch.fnmatchcase(endpoint, rule.pattern):
            return rule.tier
    return default


_ID_HASHES = "SELECT hash(project_id, event_id) AS h FROM events"

# Every row whose id hash repeats, ranked by the exact (project_id, event_id): rows that only
# share a hash (a collision) land in different partitions and each stays copy 1.
_COPIES = f"""
CREATE OR REPLACE TEMP TABLE copies AS
    SELECT project_id, event_id, api_key, endpoint, status_code,
           request_bytes, response_bytes, batch_id,
           row_number() OVER (PARTITION BY {', '.join(DEDUPE_KEY)}
                              ORDER BY {', '.join(DEDUPE_ORDER)}) AS copy_no
    FROM (SELECT project_id, event_id, api_key, endpoint, status_code, request_bytes,
                 response_bytes, batch_id, received_at, kafka_partition, kafka_offset,
                 hash(project_id, event_id) AS h FROM events)
    SEMI JOIN repeated_hashes USING (h)
"""  # noqa: S608 - composed from constants

# Tiers are resolved once per distinct (project, endpoint) into ``tier_map``; joining that
# small map and grouping by tier (thousands of groups) is ~3x cheaper than grouping every row
# by (project, api_key, endpoint) (hundreds of thousands of groups) and rolling up after.
_DISTINCT_ENDPOINTS = "SELECT DISTINCT project_id, endpoint FROM events"

_PER_TIER = """
WITH raw AS (SELECT project_id, api_key, tier, count(*) AS n,
                    count(*) FILTER (WHERE status_code >= 400) AS errors,
                    count(*) FILTER (WHERE status_code >= 500) AS server_errors,
                    sum(request_bytes)::BIGINT AS bytes_in,
                    sum(response_bytes)::BIGINT AS bytes_out
             FROM events JOIN tier_map USING (project_id, endpoint) GROUP BY ALL),
extra AS (SELECT project_id, api_key, tier, count(*) AS n,
                    count(*) FILTER (WHERE status_code >= 400) AS errors,
                    count(*) FILTER (WHERE status_code >= 500) AS server_errors,
                    sum(request_bytes)::BIGINT AS bytes_in,
                    sum(response_bytes)::BIGINT AS bytes_out
          FROM copies JOIN tier_map USING (project_id, endpoint) WHERE copy_no > 1
          GROUP BY ALL)
SELECT r.project_id, r.api_key, r.tier,
       r.n - coalesce(x.n, 0) AS n,
       r.errors - coalesce(x.errors, 0) AS errors,
       r.server_errors - coalesce(x.server_errors, 0) AS server_errors,
       r.bytes_in - coalesce(x.bytes_in, 0) AS bytes_in,
       r.bytes_out - coalesce(x.bytes_out, 0) AS bytes_out,
       r.n AS raw_n
FROM raw r LEFT JOIN extra x USING (project_id, api_key, tier)
ORDER BY ALL
"""

# Copies in distinct batches: the stream drops a retried batch (same batch id) but counts
# an independent resend, so only those extra copies appear in the stream's figure.
_DUPLICATES_IN_STREAM = """
WITH per_event AS (
    SELECT project_id, event_id,
           count(DISTINCT batch_id) + count(*) FILTER (WHERE batch_id IS NULL) - 1 AS in_stream
    FROM copies GROUP BY ALL
)
SELECT c.project_id, c.api_key, sum(p.in_stream)::BIGINT
FROM copies c JOIN per_event p USING (project_id, event_id)
WHERE c.copy_no = 1 GROUP BY ALL
"""


def repeated_values(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The values occurring more than once, each once, ascending.

    A sort of 10M ids' hashes beats a hash table of 10M mostly-unique keys several times over.
    """
    ordered = np.sort(values)
    repeats: npt.NDArray[np.uint64] = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    return repeats


def connect(threads: int, memory_limit: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET memory_limit = ?", [memory_limit])
    con.execute("SET preserve_insertion_order = false")
    return con


def register_day(con: duckdb.DuckDBPyConnection, lake: Lake, day: date) -> int:
    """Expose the day's committed files as view ``events``; returns the file count.

    ``events`` leaves out the rows whose keys PostgreSQL cannot store (``refused_rows``
    lists them): one such row must not stop every tenant's billing.
    """
    files = committed_files(lake, day)
    if not files:
        con.register("lake_events", LAKE_ARROW_SCHEMA.empty_table())
    elif lake.is_local:
        # By name: files written before a column was added read it as NULL. The folder
        # names are the contract's, not columns: the project is read from the rows.
        con.read_parquet(files, union_by_name=True, hive_partitioning=False
                         ).create_view("lake_events")
    else:
        con.register("lake_events", pads.dataset(files, filesystem=lake.fs, format="parquet",
                                                 schema=LAKE_ARROW_SCHEMA))
    (refused,) = con.execute(_ANY_REFUSED).fetchone() or (False,)
    # The filter costs a scan of two columns per query: only paid on a day that needs it.
    con.execute(_FILTERED_EVENTS if refused else "CREATE OR REPLACE VIEW events AS"
                " SELECT * FROM lake_events")
    return len(files)


@dataclass(frozen=True)
class RefusedRow:
    """A lake row billing cannot store (U+0000 in a key), with its Kafka coordinates."""

    project_id: str
    api_key: str
    event_id: str
    kafka_partition: int
    kafka_offset: int
    field: str


# Keys billing_usage stores: text PostgreSQL cannot hold in them refuses the row.
_KEY_NUL = "contains(project_id, chr(0)) OR contains(api_key, chr(0))"
_ANY_REFUSED = (
    f"SELECT count(*) > 0 FROM (SELECT 1 FROM lake_events WHERE {_KEY_NUL} LIMIT 1)"  # noqa: S608
)
_FILTERED_EVENTS = (
    f"CREATE OR REPLACE VIEW events AS SELECT * FROM lake_events WHERE NOT ({_KEY_NUL})"  # noqa: S608
)
_REFUSED = f"""
SELECT project_id, api_key, event_id, kafka_partition, kafka_offset,
       CASE WHEN contains(project_id, chr(0)) THEN 'project_id' ELSE 'api_key' END
FROM lake_events WHERE {_KEY_NUL}
ORDER BY kafka_partition, kafka_offset"""  # noqa: S608 - constant text


def refused_rows(con: duckdb.DuckDBPyConnection) -> list[RefusedRow]:
    """The rows of the registered day that ``events`` leaves out (rare: one step each)."""
    return [RefusedRow(*row) for row in con.execute(_REFUSED).fetchall()]


def compute_usage(con: duckdb.DuckDBPyConnection, day: date,
                  tiers: Mapping[str, Sequence[TierRule]], default_tier: str) -> list[UsageRow]:
    """Usage of the day registered as ``events`` on ``con``; one row per (project, key)."""
    pairs = con.execute(_DISTINCT_ENDPOINTS).fetchall()
    con.register("tier_map", pa.table({
        "project_id": [p for p, _ in pairs],
        "endpoint": [e for _, e in pairs],
        "tier": [tier_of(e, tiers.get(p, ()), default_tier) for p, e in pairs],
    }, schema=pa.schema([("project_id", pa.string()), ("endpoint", pa.string()),
                         ("tier", pa.string())])))
    hashes = np.asarray(con.execute(_ID_HASHES).fetchnumpy()["h"], dtype=np.uint64)
    con.register("repeated_hashes", pa.table({"h": pa.array(repeated_values(hashes),
                                                             pa.uint64())}))
    del hashes
    con.execute(_COPIES)
    acc: dict[tuple[str, str], _Acc] = defaultdict(_Acc)
    for project, api_key, tier, *figures in con.execute(_PER_TIER).fetchall():
        entry = acc[(project, api_key)]
        entry.tiers[tier] = entry.tiers.get(tier, 0) + int(figures[0])
        entry.figures = [a + int(b) for a, b in zip(entry.figures, figures, strict=True)]
    in_stream = {(p, k): int(n) for p, k, n in con.execute(_DUPLICATES_IN_STREAM).fetchall()}
    for name in ("tier_map", "repeated_hashes"):
        con.unregister(name)
    rows = []
    for (project, api_key), entry in sorted(acc.items()):
        n, errors, server_errors, bytes_in, bytes_out, raw = entry.figures
        rows.append(UsageRow(
            project_id=project, api_key=api_key, day=day, total_requests=n,
            requests_by_tier={t: c for t, c in sorted(entry.tiers.items()) if c},
            error_count=errors, server_error_count=server_errors,
            bytes_in=bytes_in, bytes_out=bytes_out, raw_count=raw,
            duplicates_removed=raw - n,
            duplicates_in_stream=in_stream.get((project, api_key), 0),
        ))
    return rows
