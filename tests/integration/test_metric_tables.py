"""The migrated schema is the one ``schemas.metric_tables`` defines (columns, aggregates)."""

import pytest

from schemas.metric_tables import ALL_TABLES, MEASURES, TIME_COLUMN

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""


@pytest.mark.parametrize("table", ALL_TABLES, ids=lambda t: t.name)
def test_table_columns_are_the_defined_key_and_measures(db, table):
    expected = [(TIME_COLUMN, "timestamp with time zone"),
                *((c.name, c.sql_type) for c in table.key),
                *((m.name, m.sql_type) for m in MEASURES)]
    assert db.execute(_COLUMNS, (table.name,)).fetchall() == expected


@pytest.mark.parametrize("table", [t for t in ALL_TABLES if t.source],
                         ids=lambda t: t.name)
def test_continuous_aggregate_is_the_composed_select(db, table):
    (stored,) = db.execute("SELECT view_definition FROM timescaledb_information."
                           "continuous_aggregates WHERE view_name = %s",
                           (table.name,)).fetchone()
    with db.transaction(force_rollback=True):
        db.execute(f"CREATE TEMP VIEW composed AS {table.aggregate_select()}")
        (composed,) = db.execute("SELECT pg_get_viewdef('composed'::regclass)").fetchone()
    assert stored.strip() == composed.strip()
    (width,) = db.execute(
        "SELECT bucket_width::interval FROM timescaledb_information.continuous_aggregates"
        " JOIN _timescaledb_catalog.continuous_agg ON user_view_name = view_name"
        " JOIN _timescaledb_catalog.continuous_aggs_bucket_function USING (mat_hypertable_id)"
        " WHERE view_name = %s", (table.name,)).fetchone()
    assert width.total_seconds() == table.seconds
    options = db.execute("SELECT materialized_only FROM timescaledb_information."
                         "continuous_aggregates WHERE view_name = %s", (table.name,)).fetchone()
    assert options == (False,)  # real-time aggregation
