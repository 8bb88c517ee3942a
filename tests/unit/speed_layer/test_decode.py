"""A poll of format v2 records → rows: batch ids from the records, per-row offsets, and
what is refused (a whole record, or just one event of it)."""

import msgspec
import numpy as np
import pytest

from schemas.codec import record_key
from schemas.records import read_record
from speed_layer.decode import decode_poll
from tests.records import gateway_records, one_per_event
from tests.unit.speed_layer.fixtures import make_batch, make_records

pytestmark = pytest.mark.unit


def test_batch_ids_come_from_the_records():
    records = make_records(3, minutes=1)
    batch = make_batch(records, batch_id=["a", "b", "c"])
    assert batch.columns.batch_id.to_pylist() == ["a", "b", "c"]
    assert batch.columns.batch_index.tolist() == [0, 1, 2]


def test_rows_stay_aligned_around_a_poison_record():
    values = one_per_event(make_records(3, minutes=1), batch_id=["w", "y", "z"])
    values.insert(1, b"{broken")
    batch = decode_poll(topic="t", partition=0, values=values, keys=[None] * 4,
                        offsets=range(10, 14), produced_ms=[1, 2, 3, 4])
    assert batch.columns.batch_id.to_pylist() == ["w", "y", "z"]
    assert batch.offsets.tolist() == [10, 12, 13]
    assert batch.produced_ms.tolist() == [1, 3, 4]
    assert [(d.offset, d.kind, d.value) for d in batch.dead_letters] == [
        (11, "undecodable", b"{broken")]
    assert batch.next_offset == 14


def test_every_event_of_a_record_gets_its_records_offset_and_produce_time():
    records = make_records(200, minutes=1, projects=1, keys=9)
    v2 = gateway_records(records, partitions=1, batch_id="b1")
    more = gateway_records(records[:50], partitions=1, batch_id="b2")
    values = [r.value for r in v2 + more]
    assert len(values) == 2
    batch = decode_poll(topic="t", partition=0, values=values, keys=[r.key for r in v2 + more],
                        offsets=[40, 41], produced_ms=[7, 9])
    assert batch.offsets.tolist() == [40] * 200 + [41] * 50
    assert batch.produced_ms.tolist() == [7] * 200 + [9] * 50
    assert batch.columns.batch_id.to_pylist() == ["b1"] * 200 + ["b2"] * 50
    assert batch.columns.batch_index.tolist() == list(range(200)) + list(range(50))
    assert batch.columns.endpoint.to_pylist() == [r.endpoint for r in records + records[:50]]
    assert batch.next_offset == 42


def test_an_event_with_nul_text_is_dead_lettered_alone_and_its_records_others_go_on():
    records = make_records(30, minutes=1, projects=1, keys=1)
    records[7] = msgspec.structs.replace(records[7], endpoint="/a\x00b", event_id="bad-7")
    (bad,) = gateway_records(records, partitions=1, batch_id="b1")
    (good,) = gateway_records(records[:5], partitions=1, batch_id="b2")
    key = record_key(records[0].project_id, records[0].api_key)
    batch = decode_poll(topic="t", partition=2, values=[good.value, bad.value, good.value],
                        keys=[key] * 3, offsets=[5, 6, 7], produced_ms=[1, 2, 3])
    assert len(batch) == 5 + 29 + 5
    assert batch.offsets.tolist() == [5] * 5 + [6] * 29 + [7] * 5
    assert np.array_equal(batch.columns.batch_index[5:34], [i for i in range(30) if i != 7])
    (letter,) = batch.dead_letters
    assert (letter.offset, letter.partition, letter.kind, letter.event_id, letter.key) == (
        6, 2, "unstorable", "bad-7", key)
    assert letter.project_id == records[0].project_id
    assert letter.reason.startswith("endpoint: contains U+0000")
    alone = read_record(letter.value)
    assert alone.num_rows == 1
    assert alone.column("endpoint")[0].as_py() == "/a\x00b"
    assert alone.column("batch_index")[0].as_py() == 7
