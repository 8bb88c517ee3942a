"""Where a record's batch id is read from: its body, or its header for older records."""

import pytest

from schemas.codec import encode_records, header_batch_id
from schemas.topics import BATCH_ID_HEADER, FORMAT_HEADER
from speed_layer.decode import decode_poll
from tests.unit.speed_layer.fixtures import make_batch, make_records, rows_as_dict
from tests.unit.speed_layer.test_windows import windows

pytestmark = pytest.mark.unit


def test_body_batch_ids_are_used_and_headers_fill_in_for_older_records():
    records = make_records(6, minutes=1)
    body = make_batch(records[:3], batch_id=["a", "b", "c"])
    header = make_batch(records[3:], batch_id=["d", "", "f"], id_in="header")
    assert body.batch_ids.tolist() == ["a", "b", "c"]
    assert header.batch_ids.tolist() == ["d", "", "f"]


def test_header_batch_ids_stay_aligned_around_a_poison_record():
    values = encode_records(make_records(3, minutes=1))
    values.insert(1, b"{broken")
    batch = decode_poll(topic="t", partition=0, values=values, keys=[None] * 4,
                        offsets=range(10, 14), header_batch_ids=["w", "x", "y", "z"],
                        produced_ms=[1, 2, 3, 4])
    assert batch.batch_ids.tolist() == ["w", "y", "z"]
    assert batch.offsets.tolist() == [10, 12, 13]
    assert batch.produced_ms.tolist() == [1, 3, 4]
    assert [d.offset for d in batch.dead_letters] == [11]


def test_batch_id_headers_are_read_as_strings_wherever_they_sit():
    assert header_batch_id([(BATCH_ID_HEADER, b"b1"), (FORMAT_HEADER, b"1")]) == "b1"
    assert header_batch_id([(FORMAT_HEADER, b"1"), (BATCH_ID_HEADER, b"b2")]) == "b2"
    assert header_batch_id({BATCH_ID_HEADER: "b3"}) == "b3"
    assert header_batch_id([(BATCH_ID_HEADER, None)]) == ""
    assert header_batch_id(None) == ""


def test_records_without_any_batch_id_are_never_deduplicated():
    records = make_records(40, minutes=1)
    w = windows()
    w.add(make_batch(records, batch_id="b1", produced_ms=1_000, id_in="header"))
    w.add(make_batch(records, batch_id="b1", produced_ms=60_000, first_offset=40,
                     id_in="header"))
    w.add(make_batch(records[:5], batch_id="", produced_ms=60_000, first_offset=80))
    w.add(make_batch(records[:5], batch_id="", produced_ms=90_000, first_offset=85))
    rows = rows_as_dict([w.emit()])
    assert sum(r["request_count"] for r in rows.values()) == 50
    assert w.duplicates == 40
    assert set(w.deduper.first_ms) == {"b1"}
