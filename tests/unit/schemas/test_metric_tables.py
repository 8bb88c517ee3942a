"""The one definition of the metric tables is what every writer and reader composes from."""

import pytest

from query_api.measures import VALUE_MEASURES
from query_api.params import ROLLUP_DIMENSIONS
from schemas.metric_tables import (
    CONSUMER_TABLES,
    ENDPOINT_TABLES,
    MEASURE_BY_NAME,
    METRIC_TABLES,
    SERIES_KEY,
    conflict_target,
    smallest_table,
)
from speed_layer.items import METRIC_ROWS_SCHEMA
from speed_layer.metrics_sql import (
    METRIC_COLUMNS,
    STAGE_METRICS,
    UPSERT_METRICS,
    UPSERT_METRICS_UNIQUE,
)


def test_the_query_api_filters_on_the_series_key_without_the_project():
    assert ROLLUP_DIMENSIONS == tuple(c.name for c in SERIES_KEY[1:])


def test_every_measure_the_query_api_reads_is_defined():
    for columns in VALUE_MEASURES.values():
        assert set(columns.values()) <= MEASURE_BY_NAME.keys()


def test_the_speed_layer_stages_and_upserts_every_column_from_its_rows():
    # Emitted rows are Arrow batches; the digest travels as its centroid lists.
    names = set(METRIC_ROWS_SCHEMA.names)
    assert {"digest_means", "digest_counts"} <= names
    fields = names | {"digest"}
    staged = METRIC_COLUMNS.split(", ")
    assert staged[:2] == ["seq", "bucket_us"]
    assert {m.field for m in MEASURE_BY_NAME.values()} | {c.name for c in SERIES_KEY} <= fields
    for name in staged:
        assert name in STAGE_METRICS
    for upsert in (UPSERT_METRICS, UPSERT_METRICS_UNIQUE):
        assert f"ON CONFLICT ({conflict_target()})" in upsert
        for name in MEASURE_BY_NAME:
            assert f"{name} = EXCLUDED.{name}" in upsert
    assert "DISTINCT ON" in UPSERT_METRICS and "DISTINCT ON" not in UPSERT_METRICS_UNIQUE


def test_each_level_aggregates_the_one_below():
    names = [t.name for t in METRIC_TABLES]
    assert [t.source for t in METRIC_TABLES] == [None, *names[:-1]]
    assert [t.seconds for t in METRIC_TABLES] == [60, 3600, 86400]


def test_the_smallest_table_with_the_needed_columns_serves_a_query():
    assert smallest_table(3600, {"project_id"}).name == "metrics_project_1h"
    assert smallest_table(3600, {"project_id", "method"}).name == "metrics_endpoints_1h"
    assert smallest_table(60, {"project_id", "endpoint", "status_class"}).name == (
        "metrics_endpoints_1m")
    assert smallest_table(86400, {"project_id", "api_key"}).name == "metrics_consumers_1d"
    assert smallest_table(3600, {"project_id", "api_key", "endpoint"}).name == "metrics_1h"
    with pytest.raises(ValueError, match="country"):
        smallest_table(60, {"project_id", "country"})


def test_every_project_wide_level_aggregates_the_one_below_it_with_its_own_key():
    for levels in (ENDPOINT_TABLES, CONSUMER_TABLES):
        assert [t.source for t in levels] == ["metrics_1m", levels[0].name, levels[1].name]
        assert all(t.key == levels[0].key and t.key[0].name == "project_id" for t in levels)
        assert "api_key" not in levels[0].key_names or "endpoint" not in levels[0].key_names
