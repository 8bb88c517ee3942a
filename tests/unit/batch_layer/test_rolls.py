from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_layer.lake import LAKE_ARROW_SCHEMA, open_lake, write_parquet_atomic
from batch_layer.rolls import (
    ConsumedBatch,
    PartitionBuffer,
    decode_batch,
    lake_memory_schema,
    partition_runs,
    roll_files,
    slice_offsets,
    split_by_day_project,
)
from batch_layer.settings import BatchSettings
from schemas.codec import record_key
from schemas.lake import LakeSettings
from tests.records import gateway_records, one_per_event
from tests.unit.batch_layer.fixtures import DAY, make_events


def consumed(records, partition=3, first_offset=100, extra_values=()):
    values = one_per_event(records, batch_id="b1") + list(extra_values)
    n = len(values)
    return ConsumedBatch(
        partitions=np.full(n, partition, np.int32),
        offsets=np.arange(first_offset, first_offset + n, dtype=np.int64),
        keys=[record_key(r.project_id, r.api_key) for r in records] + [None] * len(extra_values),
        values=values,
        timestamps_ms=np.full(n, 1_795_132_800_000, np.int64),
    )


def test_decode_batch_keeps_every_field_and_the_kafka_position():
    records = make_events(50, days=2)
    decoded = decode_batch(consumed(records))
    table = decoded.events
    assert table.schema == lake_memory_schema()
    assert table.num_rows == 50
    assert table.column("event_id").to_pylist() == [r.event_id for r in records]
    assert table.column("kafka_offset").to_pylist() == list(range(100, 150))
    assert set(table.column("kafka_partition").to_pylist()) == {3}
    assert table.column("batch_id").to_pylist() == ["b1"] * 50
    assert decoded.quarantine.num_rows == 0


def test_events_of_a_gateway_record_share_its_offset_and_batch_id():
    records = make_events(120, projects=("acme",))
    v2 = gateway_records(records, partitions=1, batch_id="B")
    batch = ConsumedBatch(
        partitions=np.full(2, 5, np.int32), offsets=np.array([8, 9], np.int64),
        keys=[v2[0].key, None], values=[v2[0].value, b"{not v2"],
        timestamps_ms=np.full(2, 1_795_132_800_000, np.int64))
    decoded = decode_batch(batch)
    table = decoded.events
    assert table.schema == lake_memory_schema()
    assert table.column("event_id").to_pylist() == [r.event_id for r in records]
    assert table.column("kafka_offset").to_pylist() == [8] * 120
    assert table.column("batch_id").to_pylist() == ["B"] * 120
    assert decoded.quarantine.column("kafka_offset").to_pylist() == [9]


def test_undecodable_records_go_to_quarantine_with_their_offset():
    records = make_events(5)
    decoded = decode_batch(consumed(records, extra_values=[b"{not json", b'{"v": 99}']))
    assert decoded.events.num_rows == 5
    assert decoded.quarantine.column("kafka_offset").to_pylist() == [105, 106]
    assert decoded.quarantine.column("value").to_pylist() == [b"{not json", b'{"v": 99}']
    assert all(decoded.quarantine.column("reason").to_pylist())


def test_split_by_day_project_partitions_exactly_and_keeps_offset_order():
    records = make_events(400, days=3, projects=("a", "b/c", "d"))
    table = decode_batch(consumed(records)).events
    parts = split_by_day_project(table)
    assert sum(p.num_rows for _, _, p in parts) == 400
    assert len({(d, p) for d, p, _ in parts}) == len(parts) == 9
    for day, project, part in parts:
        assert set(part.column("project_id").to_pylist()) == {project}
        days = {ts.date() for ts in part.column("timestamp").to_pylist()}
        assert days == {day}
        offsets = part.column("kafka_offset").to_numpy()
        assert np.all(np.diff(offsets) > 0)
    assert {d for d, _, _ in parts} == {DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)}


def test_split_handles_timestamps_before_1970_and_empty_tables():
    records = make_events(3, day_start_us=-86_400_000_000)
    table = decode_batch(consumed(records)).events
    assert [d for d, _, _ in split_by_day_project(table)][0] == date(1969, 12, 31)
    assert split_by_day_project(table.slice(0, 0)) == []


def test_roll_files_are_named_by_partition_and_first_offset():
    records = make_events(30, projects=("acme",))
    decoded = decode_batch(consumed(records, partition=7, first_offset=42,
                                    extra_values=[b"garbage"]))
    buffer = PartitionBuffer(partition=7, opened_at=0.0)
    buffer.add(decoded.events, decoded.quarantine, decoded.quarantine_day, 42, 72)
    files = roll_files(buffer)
    assert [f.relative_path for f in files] == [
        "dt=2026-11-20/project=acme/part-0007-00000000000000000042.parquet",
        "_quarantine/dt=2026-11-20/part-0007-00000000000000000042.parquet",
    ]
    assert files[0].table.num_rows == 30


def test_project_ids_are_escaped_in_paths():
    records = make_events(2, projects=("we/ird=..",))
    buffer = PartitionBuffer(partition=0, opened_at=0.0)
    d = decode_batch(consumed(records))
    buffer.add(d.events, d.quarantine, d.quarantine_day, 100, 101)
    assert roll_files(buffer)[0].relative_path.startswith("dt=2026-11-20/project=we%2Fird%3D../")


@pytest.mark.parametrize("upto, head", [(99, 0), (100, 1), (104, 5), (1000, 10)])
def test_slice_offsets_cuts_at_the_replay_end(upto, head):
    table = pa.table({"x": list(range(10))})
    offsets = np.arange(100, 110, dtype=np.int64)
    a, b = slice_offsets(table, offsets, upto)
    assert (a.num_rows, b.num_rows) == (head, 10 - head)


def test_buffer_replay_completes_at_the_recorded_last_offset():
    buffer = PartitionBuffer(partition=0, opened_at=0.0, replay_last_offset=20)
    empty = pa.table({"x": pa.array([], pa.int64())})
    buffer.add(empty, empty, np.array([], np.int64), 10, 19)
    assert not buffer.replay_complete
    buffer.add(empty, empty, np.array([], np.int64), 20, 20)
    assert buffer.replay_complete


def test_batch_index_is_each_events_position_in_its_http_batch():
    records = make_events(120, projects=("acme",))
    v2 = gateway_records(records, partitions=3, batch_id="B")
    batch = ConsumedBatch(
        partitions=np.array([r.partition for r in v2], np.int32),
        offsets=np.arange(len(v2), dtype=np.int64), keys=[r.key for r in v2],
        values=[r.value for r in v2], timestamps_ms=np.zeros(len(v2), np.int64))
    table = decode_batch(batch).events
    position = {r.event_id: i for i, r in enumerate(records)}
    got = dict(zip(table.column("event_id").to_pylist(),
                   table.column("batch_index").to_pylist(), strict=True))
    assert got == position


def test_partition_runs_slice_each_partition_in_order():
    runs = partition_runs(np.array([2, 2, 0, 0, 0, 2, 1], np.int32))
    assert runs == {2: [(0, 2), (5, 1)], 0: [(2, 3)], 1: [(6, 1)]}
    assert partition_runs(np.array([], np.int32)) == {}


def test_a_roll_of_several_polls_reads_back_as_the_lake_schema_with_every_value(tmp_path):
    """Polls have their own dictionaries; the file still holds plain lake columns."""
    first, second = make_events(40, seed=1, keys=30), make_events(40, seed=2, keys=30)
    buffer = PartitionBuffer(partition=0, opened_at=0.0)
    for records, offset in ((first, 0), (second, 40)):
        d = decode_batch(consumed(records, partition=0, first_offset=offset))
        buffer.add(d.events, d.quarantine, d.quarantine_day, offset, offset + 39)
    lake = open_lake(BatchSettings(lake=LakeSettings(uri=str(tmp_path))))
    files = roll_files(buffer)
    rows = []
    for f in files:
        write_parquet_atomic(lake, lake.path(f.relative_path), f.table, 1)
        back = pq.read_table(lake.path(f.relative_path))
        assert back.schema == LAKE_ARROW_SCHEMA
        assert back.column("kafka_offset").to_pylist() == sorted(
            back.column("kafka_offset").to_pylist())
        rows += back.to_pylist()
    by_id = {r["event_id"]: r for r in rows}
    assert len(rows) == len(by_id) == 80
    for r in first + second:
        got = by_id[r.event_id]
        assert (got["project_id"], got["api_key"], got["endpoint"], got["country"],
                got["tags"] and dict(got["tags"]), got["status_code"]) == (
            r.project_id, r.api_key, r.endpoint, r.country, r.tags, r.status_code)
