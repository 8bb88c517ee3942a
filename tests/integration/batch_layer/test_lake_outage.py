"""The broker stopped under a running lake writer: it waits, then goes on, losing nothing."""

import collections
import threading

from batch_layer.lake import open_lake
from batch_layer.lake_writer import LakeWriter
from tests.integration.batch_layer.conftest import (
    lag,
    lake_table,
    produce,
    wait_for,
    writer_settings,
)
from tests.unit.batch_layer.fixtures import DAY, make_events


def test_a_kafka_outage_is_waited_out_and_every_record_lands_once(stack, fresh_topic, tmp_path):
    assert stack.kafka is not None, "this test stops the session's own broker"
    topic = fresh_topic(partitions=2)
    before, after = make_events(500, seed=81), make_events(500, seed=82)
    produce(stack.kafka_bootstrap, topic, before)
    settings = writer_settings(stack, topic, str(tmp_path / "lake"))
    lake = open_lake(settings)
    writer = LakeWriter(settings, lake)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            writer.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: errors or lag(settings, 2) == 0, 60, "the first half to be committed")
        stack.kafka.stop()
        try:
            thread.join(8)  # consuming and rolling against a dead broker
            assert thread.is_alive() and not errors, errors
        finally:
            stack.kafka.start()
        produce(stack.kafka_bootstrap, topic, after)
        wait_for(lambda: errors or lag(settings, 2) == 0, 120, "the second half to be committed")
        assert thread.is_alive() and not errors, errors
    finally:
        writer.stop()
        thread.join(30)
    assert not errors, errors
    table = lake_table(lake, [DAY])
    positions = collections.Counter(zip(table.column("kafka_partition").to_pylist(),
                                        table.column("kafka_offset").to_pylist(),
                                        table.column("event_id").to_pylist(), strict=True))
    assert max(positions.values()) == 1
    assert sorted(table.column("event_id").to_pylist()) == sorted(
        e.event_id for e in before + after)
