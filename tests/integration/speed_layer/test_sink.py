from speed_layer.items import Emission
from speed_layer.sink import _UPSERT_METRICS_UNIQUE, MetricsWriter, keys_are_unique
from speed_layer.windows import ShardWindows
from tests.integration.speed_layer.helpers import assert_rows_equal, metrics, reference
from tests.unit.speed_layer.fixtures import make_batch, make_records


def emitted(records, partition: int, windows: ShardWindows) -> Emission:
    windows.add(make_batch(records, partition=partition))
    return Emission(partition=partition, metrics=windows.emit())


def test_one_write_with_two_emissions_of_a_shard_keeps_the_newest(stack, db, project_prefix):
    records = make_records(400, minutes=2, projects=2, keys=2, seed=31,
                           project_prefix=project_prefix)
    w = ShardWindows(allowed_lateness_us=300_000_000, compression=200, attempt_window_ms=1000)
    first = emitted(records[:250], 0, w)
    second = emitted(records[250:], 0, w)  # the same windows again, with their full values
    other = ShardWindows(allowed_lateness_us=300_000_000, compression=200,
                         attempt_window_ms=1000)
    more = make_records(100, minutes=2, seed=32, project_prefix=project_prefix + "x")
    third = emitted(more, 1, other)
    assert not keys_are_unique([first, second, third])
    assert keys_are_unique([second, third])
    assert "DISTINCT ON" not in _UPSERT_METRICS_UNIQUE
    writer = MetricsWriter(stack.database_url)
    try:
        writer.write([first, second, third])
        assert_rows_equal(metrics(db, project_prefix), reference(records + more))
        writer.write([second, third])  # unique keys: the plain upsert replaces rows too
        assert_rows_equal(metrics(db, project_prefix), reference(records + more))
    finally:
        writer.close()
