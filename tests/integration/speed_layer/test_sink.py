import logging
import threading

import psycopg
import pytest

from schemas.consumer_ops import no_ops
from speed_layer.background_writer import BackgroundWriter, WriterFailed
from speed_layer.items import Emission
from speed_layer.metrics_sql import UPSERT_METRICS_UNIQUE
from speed_layer.sink import MetricsWriter, keys_are_unique
from speed_layer.windows import ShardWindows
from tests.integration.speed_layer.helpers import assert_rows_equal, metrics, reference
from tests.unit.speed_layer.fixtures import make_batch, make_records
from turnstile_cli.stack import free_ports


def emitted(records, partition: int, windows: ShardWindows) -> Emission:
    windows.add(make_batch(records, partition=partition))
    return Emission(partition=partition, metrics=windows.emit())


def test_one_write_with_two_emissions_of_a_shard_keeps_the_newest(stack, db, project_prefix):
    records = make_records(400, minutes=2, projects=2, keys=2, seed=31,
                           project_prefix=project_prefix)
    w = ShardWindows(allowed_lateness_us=300_000_000, compression=200)
    first = emitted(records[:250], 0, w)
    second = emitted(records[250:], 0, w)  # the same windows again, with their full values
    other = ShardWindows(allowed_lateness_us=300_000_000, compression=200)
    more = make_records(100, minutes=2, seed=32, project_prefix=project_prefix + "x")
    third = emitted(more, 1, other)
    assert not keys_are_unique([first, second, third])
    assert keys_are_unique([second, third])
    assert "DISTINCT ON" not in UPSERT_METRICS_UNIQUE
    writer = MetricsWriter(stack.database_url)
    try:
        writer.write([first, second, third])
        assert_rows_equal(metrics(db, project_prefix), reference(records + more))
        writer.write([second, third])  # unique keys: the plain upsert replaces rows too
        assert_rows_equal(metrics(db, project_prefix), reference(records + more))
    finally:
        writer.close()


def test_background_writer_has_everything_submitted_before_flush_committed(
        stack, db, project_prefix):
    records = make_records(600, minutes=2, projects=2, keys=3, seed=33,
                           project_prefix=project_prefix)
    w = ShardWindows(allowed_lateness_us=300_000_000, compression=200)
    writer = BackgroundWriter(MetricsWriter(stack.database_url), max_pending_rows=50)
    try:
        for start in range(0, 600, 100):  # the same windows re-emitted: the newest must win
            writer.submit(emitted(records[start:start + 100], 0, w))
        writer.flush()
        assert_rows_equal(metrics(db, project_prefix), reference(records))
    finally:
        writer.close()
    with pytest.raises(WriterFailed, match="closed"):
        writer.submit(Emission(partition=0))


def test_writer_waits_while_postgres_is_unreachable_and_ends_only_when_stopped(caplog):
    (port,) = free_ports(1)  # nothing listens there
    stop = threading.Event()
    ops = no_ops("speed_layer")
    ops._probed["postgres"] = True  # as if the probe had got through: the writer decides
    writer = BackgroundWriter(MetricsWriter(
        f"postgresql://nobody@127.0.0.1:{port}/none?connect_timeout=2", ops=ops, stop=stop))
    w = ShardWindows(allowed_lateness_us=300_000_000, compression=200)
    writer.submit(emitted(make_records(10, minutes=1), 0, w))
    flushed = threading.Event()
    failures: list[BaseException] = []

    def flush() -> None:
        try:
            writer.flush()
        except WriterFailed as exc:
            failures.append(exc)
        flushed.set()

    with caplog.at_level(logging.WARNING):
        threading.Thread(target=flush, daemon=True).start()
        assert not flushed.wait(3.0), "flush returned while PostgreSQL was unreachable"
    lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert lines and lines[0].startswith(
        f"PostgreSQL unreachable at 127.0.0.1:{port} (connection refused); retrying in")
    assert not ops.ready("postgres")
    stop.set()  # shutdown ends the wait: the write is reported as not done
    assert flushed.wait(10)
    assert failures and isinstance(failures[0].__cause__, psycopg.OperationalError)
