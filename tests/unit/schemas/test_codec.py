import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import record_key
from schemas.event import EventRecord
from schemas.jsonschema import SCHEMA_DIR, SCHEMA_FILES, render
from schemas.records import decode_metric_arrays, encode_event_records

pytestmark = pytest.mark.unit

# Text the gateway lets through: no U+0000 (PostgreSQL), no lone surrogates (UTF-8).
chars = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
text = st.text(chars, min_size=1, max_size=40)
records = st.builds(
    EventRecord,
    event_id=st.text(chars, min_size=1, max_size=64),
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
    api_key=st.text(chars, max_size=128),
    ip=st.none() | st.ip_addresses().map(str),
    user_agent=st.none() | text,
    country=st.none() | st.sampled_from(["DE", "US", "JP"]),
    function=st.none() | text,
    tags=st.none() | st.dictionaries(text, text, min_size=1, max_size=4),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(records, min_size=1, max_size=30))
def test_metric_columns_match_records(batch: list[EventRecord]) -> None:
    """What aggregation reads of v2 records, in each partition's batch order."""
    v2 = encode_event_records(batch, batch_id="b", partitioner=1)
    arrays, poison = decode_metric_arrays([r.value for r in v2])
    cols = arrays.to_metric_columns()
    assert poison == []
    assert cols.api_key == [r.api_key for r in batch]
    assert cols.endpoint == [r.endpoint for r in batch]
    assert cols.batch_id == ["b"] * len(batch)
    assert cols.timestamp_us.tolist() == [r.timestamp_us for r in batch]
    assert cols.received_at_us.tolist() == [r.received_at_us for r in batch]
    assert cols.status_code.tolist() == [r.status_code for r in batch]
    assert cols.latency_ms.tolist() == [r.latency_ms for r in batch]
    assert cols.response_bytes.tolist() == [r.response_bytes for r in batch]
    assert arrays.batch_ids().tolist() == ["b"] * len(batch)


def test_record_key_groups_a_consumer_on_one_partition() -> None:
    assert record_key("proj", "cust:1") == b"proj:cust:1"


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_committed_json_schema_matches_the_types(name: str) -> None:
    kind, title = SCHEMA_FILES[name]
    assert (SCHEMA_DIR / name).read_bytes() == render(kind, title), (
        "run `python -m schemas.jsonschema` and commit the result"
    )
