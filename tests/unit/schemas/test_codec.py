import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.arrow import EVENT_ARROW_SCHEMA
from schemas.codec import (
    decode_metric_columns,
    decode_records,
    encode_record,
    encode_records,
    record_key,
    records_to_arrow,
)
from schemas.event import EventRecord
from schemas.jsonschema import SCHEMA_DIR, SCHEMA_FILES, render

pytestmark = pytest.mark.unit

text = st.text(min_size=1, max_size=40)
records = st.builds(
    EventRecord,
    event_id=st.text(min_size=1, max_size=64),
    project_id=text,
    timestamp_us=st.integers(min_value=946_684_800_000_000, max_value=4_102_444_800_000_000),
    received_at_us=st.integers(min_value=946_684_800_000_000, max_value=4_102_444_800_000_000),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    path=text.map(lambda s: "/" + s),
    endpoint=text.map(lambda s: "/" + s),
    status_code=st.integers(100, 599),
    latency_ms=st.floats(min_value=0, max_value=86_400_000, allow_nan=False),
    request_bytes=st.integers(0, 2**53),
    response_bytes=st.integers(0, 2**53),
    api_key=st.text(max_size=128),
    ip=st.none() | st.ip_addresses().map(str),
    user_agent=st.none() | text,
    country=st.none() | st.sampled_from(["DE", "US", "JP"]),
    function=st.none() | text,
    tags=st.none() | st.dictionaries(text, text, min_size=1, max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(records, max_size=30))
def test_encode_decode_round_trip(batch: list[EventRecord]) -> None:
    decoded, poison = decode_records(encode_records(batch))
    assert poison == []
    assert decoded == batch


@settings(max_examples=100, deadline=None)
@given(st.lists(records, min_size=1, max_size=30))
def test_metric_columns_match_records(batch: list[EventRecord]) -> None:
    cols, poison = decode_metric_columns(encode_records(batch))
    assert poison == []
    assert cols.api_key == [r.api_key for r in batch]
    assert cols.endpoint == [r.endpoint for r in batch]
    assert cols.timestamp_us.tolist() == [r.timestamp_us for r in batch]
    assert cols.received_at_us.tolist() == [r.received_at_us for r in batch]
    assert cols.status_code.tolist() == [r.status_code for r in batch]
    assert cols.latency_ms.tolist() == [r.latency_ms for r in batch]
    assert cols.response_bytes.tolist() == [r.response_bytes for r in batch]


@settings(max_examples=50, deadline=None)
@given(st.lists(records, min_size=1, max_size=20))
def test_arrow_table_has_the_lake_schema_and_values(batch: list[EventRecord]) -> None:
    table = records_to_arrow(batch)
    assert table.schema == EVENT_ARROW_SCHEMA
    assert table.column("event_id").to_pylist() == [r.event_id for r in batch]
    ts = table.column("timestamp").cast("int64").to_pylist()
    assert ts == [r.timestamp_us for r in batch]


def _rec(i: int) -> EventRecord:
    return EventRecord(
        event_id=f"e{i}",
        project_id="p",
        timestamp_us=1_700_000_000_000_000 + i,
        received_at_us=1_700_000_000_000_000 + i,
        method="GET",
        path="/x",
        endpoint="/x",
        status_code=200,
        latency_ms=float(i),
    )


def test_record_carries_format_version_and_is_plain_json() -> None:
    body = orjson.loads(encode_record(_rec(1)))
    assert body["v"] == 1
    assert body["event_id"] == "e1"


@pytest.mark.parametrize(
    "poison",
    [b"not json", b'{"v": 2, "event_id": "x"}', b'{"v": 1}', b"[]", b""],
)
def test_poison_records_are_set_aside_and_the_rest_kept(poison: bytes) -> None:
    values = [encode_record(_rec(0)), poison, encode_record(_rec(2))]
    decoded, bad = decode_records(values)
    assert [r.event_id for r in decoded] == ["e0", "e2"]
    assert [p.position for p in bad] == [1]
    assert bad[0].reason
    cols, bad_cols = decode_metric_columns(values)
    assert cols.positions.tolist() == [0, 2]
    assert [p.position for p in bad_cols] == [1]


def test_unknown_format_version_is_named_in_the_reason() -> None:
    _, bad = decode_records([b'{"v": 2, "event_id": "x"}'])
    assert "v" in bad[0].reason


def test_record_key_groups_a_consumer_on_one_partition() -> None:
    assert record_key("proj", "cust:1") == b"proj:cust:1"


def test_large_batch_decodes_in_one_call() -> None:
    batch = [_rec(i) for i in range(5000)]
    cols, poison = decode_metric_columns(encode_records(batch))
    assert len(cols) == 5000 and poison == []
    assert cols.latency_ms.sum() == sum(range(5000))


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_committed_json_schema_matches_the_types(name: str) -> None:
    kind, title = SCHEMA_FILES[name]
    assert (SCHEMA_DIR / name).read_bytes() == render(kind, title), (
        "run `python -m schemas.jsonschema` and commit the result"
    )


def test_numbers_beyond_the_projections_columns_are_poison_not_an_overflow():
    import msgspec as _msgspec

    from schemas.codec import decode_metric_columns as _decode

    good = {"v": 1, "project_id": "p", "timestamp_us": 1_767_225_600_000_000,
            "received_at_us": 1_767_225_600_000_000, "method": "GET", "endpoint": "/a",
            "status_code": 200, "latency_ms": 1.0}
    values = [_msgspec.json.encode(good),
              _msgspec.json.encode({**good, "timestamp_us": 2**63 + 5}),
              _msgspec.json.encode({**good, "request_bytes": 10**30}),
              _msgspec.json.encode({**good, "status_code": 70_000})]
    cols, poison = _decode(values)
    assert len(cols) == 1 and cols.positions.tolist() == [0]
    assert [p.position for p in poison] == [1, 2, 3]
