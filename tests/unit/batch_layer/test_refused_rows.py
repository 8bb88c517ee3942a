"""What the lake writer refuses: undecodable records and text PostgreSQL cannot store."""

import msgspec
import numpy as np
import pyarrow as pa
import pytest

from batch_layer.rolls import ConsumedBatch, decode_batch
from batch_layer.storable import unstorable_rows
from schemas.codec import record_key
from schemas.records import read_record
from tests.records import gateway_records, one_per_event
from tests.unit.batch_layer.fixtures import make_events

pytestmark = pytest.mark.unit


def test_rows_with_nul_in_any_text_or_tag_are_found_and_named():
    table = pa.table({
        "a": ["x", "y\x00", "z", "w"],
        "tags": pa.array([[("k", "v")], None, [("q\x00", "1")], [("r", "\x00")]],
                         pa.map_(pa.string(), pa.string())),
        "n": [1, 2, 3, 4],
    })
    mask, reasons = unstorable_rows(table)
    assert mask.tolist() == [False, True, True, True]
    assert reasons[1].startswith("a: contains U+0000") and reasons[2].startswith("tags:")
    assert unstorable_rows(table.slice(0, 1)) == (None, [])


def test_a_consumed_batch_sends_refused_records_to_quarantine_with_project_and_reason():
    events = make_events(5, seed=3, projects=("acme",))
    events[2] = msgspec.structs.replace(events[2], user_agent="curl\x00")
    values = one_per_event(events)
    values.insert(4, b"{broken")
    keys = [record_key(e.project_id, e.api_key) for e in events]
    keys.insert(4, b"globex:k")
    decoded = decode_batch(ConsumedBatch(
        partitions=np.zeros(6, np.int32), offsets=np.arange(10, 16, dtype=np.int64),
        keys=keys, values=values,
        timestamps_ms=np.full(6, 1_700_000_000_000, np.int64)))
    assert decoded.events.column("kafka_offset").to_pylist() == [10, 11, 13, 15]
    q = decoded.quarantine.to_pydict()
    assert q["kafka_offset"] == [12, 14]
    assert q["project_id"] == ["acme", "globex"]
    assert q["reason"][0].startswith("user_agent: contains U+0000")
    assert q["value"][1] == b"{broken"
    assert read_record(q["value"][0]).column("user_agent").to_pylist() == ["curl\x00"]
    assert q["event_id"] == [events[2].event_id, None]


def test_one_refused_event_of_a_record_keeps_the_records_other_events():
    events = make_events(40, seed=4, projects=("acme",))
    events[9] = msgspec.structs.replace(events[9], tags={"k": "v\x00"})
    events[30] = msgspec.structs.replace(events[30], path="/p\x00")
    (record,) = gateway_records(events, partitions=1, batch_id="b")
    decoded = decode_batch(ConsumedBatch(
        partitions=np.zeros(1, np.int32), offsets=np.array([77], np.int64),
        keys=[record.key], values=[record.value],
        timestamps_ms=np.full(1, 1_700_000_000_000, np.int64)))
    assert decoded.events.column("event_id").to_pylist() == [
        e.event_id for i, e in enumerate(events) if i not in (9, 30)]
    q = decoded.quarantine.to_pydict()
    assert q["kafka_offset"] == [77, 77]
    assert q["event_id"] == [events[9].event_id, events[30].event_id]
    assert q["project_id"] == ["acme", "acme"]
    assert q["reason"][0].startswith("tags: a tag value contains U+0000")
    assert q["reason"][1].startswith("path: contains U+0000")
    assert [read_record(v).num_rows for v in q["value"]] == [1, 1]
