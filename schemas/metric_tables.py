"""The metric tables, defined once: series key, measures, and how each measure merges.

``metrics_1m`` is a TimescaleDB hypertable written by the speed layer; every coarser table
is a continuous aggregate over a finer one. The speed layer's staging table, COPY list and
upsert, the aggregates' SELECT lists (migrations, checked against this module by a test)
and the query API's and alert evaluator's statistics are all composed from the tuples
below, so adding a dimension is one tuple here plus one migration.

Everything here is SQL *text* built from constant identifiers of this module, never from
input; callers pass values as parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Merge(StrEnum):
    """How values of one measure combine into a coarser bucket."""

    SUM = "sum"
    MIN = "min"
    MAX = "max"
    TDIGEST = "tdigest"  # the tdigest extension's aggregate that merges digests


@dataclass(frozen=True, slots=True)
class Column:
    """A series-key column: name and SQL type."""

    name: str
    sql_type: str


@dataclass(frozen=True, slots=True)
class Measure:
    """A measure column: name, SQL type, how it merges, and the speed layer's field name."""

    name: str
    sql_type: str
    merge: Merge
    source: str = ""  # MetricRows attribute, when it differs from ``name``

    @property
    def field(self) -> str:
        return self.source or self.name

    def merged(self, table_alias: str = "") -> str:
        """The aggregate that merges this measure's rows, keeping its SQL type."""
        column = f"{table_alias}.{self.name}" if table_alias else self.name
        expr = f"{self.merge.value}({column})"
        # sum(bigint) is numeric in PostgreSQL; keep the column's own type.
        return f"{expr}::{self.sql_type}" if self.merge is Merge.SUM else expr


TIME_COLUMN: Final = "bucket"

SERIES_KEY: Final = (
    Column("project_id", "text"),
    Column("api_key", "text"),  # the project's consumer
    Column("endpoint", "text"),
    Column("method", "text"),
    Column("status_class", "smallint"),
)

MEASURES: Final = (
    Measure("request_count", "bigint", Merge.SUM),
    Measure("error_count", "bigint", Merge.SUM),
    Measure("server_error_count", "bigint", Merge.SUM),
    Measure("latency_sum", "double precision", Merge.SUM),
    Measure("latency_min", "double precision", Merge.MIN),
    Measure("latency_max", "double precision", Merge.MAX),
    Measure("latency_digest", "tdigest", Merge.TDIGEST, source="digest"),
    Measure("bytes_in", "bigint", Merge.SUM),
    Measure("bytes_out", "bigint", Merge.SUM),
)

MEASURE_BY_NAME: Final = {m.name: m for m in MEASURES}


@dataclass(frozen=True, slots=True)
class MetricTable:
    """One level: its name, bucket width, key columns and the table it aggregates."""

    name: str
    width: str  # a PostgreSQL interval
    seconds: int
    key: tuple[Column, ...] = SERIES_KEY
    source: str | None = None  # None: the hypertable the speed layer writes

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.key)

    def aggregate_select(self) -> str:
        """The continuous aggregate's query: its source's rows merged per bucket and key."""
        assert self.source is not None  # noqa: S101 - only aggregates have a source
        keys = ", ".join(self.key_names)
        measures = ",\n       ".join(f"{m.merged()} AS {m.name}" for m in MEASURES)
        positions = ", ".join(str(i) for i in range(1, len(self.key) + 2))
        return (f"SELECT time_bucket(INTERVAL '{self.width}', {TIME_COLUMN}) AS {TIME_COLUMN},"
                f" {keys},\n       {measures}\nFROM {self.source}\nGROUP BY {positions}")


METRICS_1M: Final = MetricTable("metrics_1m", "1 minute", 60)
METRICS_1H: Final = MetricTable("metrics_1h", "1 hour", 3600, source="metrics_1m")
METRICS_1D: Final = MetricTable("metrics_1d", "1 day", 86400, source="metrics_1h")
METRIC_TABLES: Final = (METRICS_1M, METRICS_1H, METRICS_1D)

# Project-wide levels for dashboards: the same measures without the consumer, and per
# consumer without the endpoint. A project with 1,000 consumers over 50 endpoints has
# ~20,000 series a minute in metrics_1m but a few hundred per endpoint and 1,000 per
# consumer, so breakdowns merge that many fewer digests.
ENDPOINT_KEY: Final = tuple(c for c in SERIES_KEY if c.name != "api_key")
CONSUMER_KEY: Final = tuple(c for c in SERIES_KEY if c.name in ("project_id", "api_key"))
# One series per project: a project's totals and time series (the dashboard's historical
# call) merge one digest per bucket instead of one per endpoint.
PROJECT_KEY: Final = SERIES_KEY[:1]


def _levels(prefix: str, key: tuple[Column, ...]) -> tuple[MetricTable, ...]:
    return (MetricTable(f"{prefix}_1m", "1 minute", 60, key, "metrics_1m"),
            MetricTable(f"{prefix}_1h", "1 hour", 3600, key, f"{prefix}_1m"),
            MetricTable(f"{prefix}_1d", "1 day", 86400, key, f"{prefix}_1h"))


ENDPOINT_TABLES: Final = _levels("metrics_endpoints", ENDPOINT_KEY)
CONSUMER_TABLES: Final = _levels("metrics_consumers", CONSUMER_KEY)
PROJECT_TABLES: Final = _levels("metrics_project", PROJECT_KEY)
ALL_TABLES: Final = (*METRIC_TABLES, *ENDPOINT_TABLES, *CONSUMER_TABLES, *PROJECT_TABLES)


def smallest_table(seconds: int, columns: frozenset[str] | set[str]) -> MetricTable:
    """The table of bucket width ``seconds`` with the fewest series that has ``columns``.

    The project total first (one series), then per endpoint (a few hundred series per
    project), then per consumer, then the full series key. Every level has the same
    totals, so the choice never changes answers.
    """
    for table in (*PROJECT_TABLES, *ENDPOINT_TABLES, *CONSUMER_TABLES, *METRIC_TABLES):
        if table.seconds == seconds and columns <= set(table.key_names):
            return table
    raise ValueError(f"no metric table of {seconds} s buckets has {sorted(columns)}")


def column_list(*prefix: str) -> str:
    """``prefix…, bucket, key…, measures…``: the written columns of metrics_1m, in order."""
    names = [*prefix, TIME_COLUMN, *(c.name for c in SERIES_KEY), *(m.name for m in MEASURES)]
    return ", ".join(names)


def conflict_target() -> str:
    """The unique key of metrics_1m (its primary key): the series and the minute."""
    return ", ".join([SERIES_KEY[0].name, TIME_COLUMN, *(c.name for c in SERIES_KEY[1:])])


def replace_on_conflict() -> str:
    """A bucket's new value replaces the old one (writers always send the full value)."""
    sets = ",\n    ".join(f"{m.name} = EXCLUDED.{m.name}" for m in MEASURES)
    return f"ON CONFLICT ({conflict_target()}) DO UPDATE SET\n    {sets}"
