"""The speed layer's SQL for metrics_1m, composed from ``schemas.metric_tables``.

Windows arrive in a temporary staging table (COPY of Arrow-written CSV) and are upserted
into the hypertable: a window's row is *replaced* by its latest full state, never added
to, so re-emits and replays are idempotent. When one write may name a key twice (several
emissions of one shard), ``DISTINCT ON (key) … ORDER BY seq DESC`` keeps the newest; the
sort costs ~30 % of the upsert, so the variant without it serves writes whose keys are
known to be unique.
"""

from __future__ import annotations

from typing import Final

from schemas.metric_tables import MEASURES, SERIES_KEY, column_list, replace_on_conflict

_BUCKET_US: Final = "bucket_us"
_STAGE_TABLE: Final = "speed_stage"

STAGE_METRICS: Final = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE_TABLE} (\n    seq bigint, {_BUCKET_US} bigint, "
    + ", ".join(f"{c.name} {c.sql_type}" for c in (*SERIES_KEY, *MEASURES))
    + "\n) ON COMMIT DELETE ROWS"
)

# staging column ← MetricRows field, in the COPY order after seq
METRIC_SOURCES: Final = (
    (_BUCKET_US, _BUCKET_US),
    *((c.name, c.name) for c in SERIES_KEY),
    *((m.name, m.field) for m in MEASURES),
)

METRIC_COLUMNS: Final = ", ".join(["seq", *(target for target, _ in METRIC_SOURCES)])
COPY_METRICS: Final = f"COPY {_STAGE_TABLE} ({METRIC_COLUMNS}) FROM STDIN (FORMAT csv)"


def _upsert(distinct: bool) -> str:
    key = [SERIES_KEY[0].name, _BUCKET_US, *(c.name for c in SERIES_KEY[1:])]
    values = ", ".join([
        f"timestamptz 'epoch' + {_BUCKET_US} * interval '1 microsecond'",
        *(c.name for c in (*SERIES_KEY, *MEASURES)),
    ])
    head = f"SELECT DISTINCT ON ({', '.join(key)})" if distinct else "SELECT"
    order = f"\nORDER BY {', '.join(key)}, seq DESC" if distinct else ""
    return (f"INSERT INTO metrics_1m AS m ({column_list()})\n{head}\n    {values}\n"
            f"FROM {_STAGE_TABLE}{order}\n{replace_on_conflict()}")


UPSERT_METRICS: Final = _upsert(distinct=True)
# Every shard (Kafka partition) owns its windows and names each at most once per emission:
# when a write holds one emission per shard, no key repeats and the sort is not needed.
UPSERT_METRICS_UNIQUE: Final = _upsert(distinct=False)
