"""Format v2: round trips, grouping by partition, determinism, poison records, schema file."""

from __future__ import annotations

import random
import uuid

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.event import EventRecord
from schemas.records import (
    CANONICAL_PREFIX,
    DECODED_SCHEMA,
    EVENT_RECORD_V2_SCHEMA,
    FORMAT_KEY,
    SCHEMA_FILE,
    InvalidRecord,
    KeyPartitioner,
    V2Record,
    decode_metric_arrays,
    decode_records,
    encode_columns,
    encode_event_records,
    event_record_columns,
    event_value,
    load_schema_file,
    read_record,
    write_record,
)
from schemas.records.schema import render_schema_file
from tests.unit.schemas.test_record_format_murmur2 import java_murmur2

pytestmark = pytest.mark.unit

BASE_US = 1_764_000_000_000_000
ENDPOINTS = ["/v1/search", "/v1/users/{id}", "/v1/orders/{id}", "/health"]
AGENTS = ["Mozilla/5.0 Chrome/131.0", "python-httpx/0.27", "curl/8.5.0", None]


def make_batch(n: int, *, seed: int = 1, project: str = "proj_1", keys: int = 50,
               batch_id: str = "batch-1") -> list[EventRecord]:
    """An HTTP batch as the gateway has it after validation (positions 0..n-1)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        endpoint = rng.choice(ENDPOINTS)
        out.append(EventRecord(
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex, project_id=project,
            timestamp_us=BASE_US + i * 1000, received_at_us=BASE_US + 5_000_000,
            method=rng.choice(["GET", "POST"]), path=endpoint.replace("{id}", str(i)),
            endpoint=endpoint, status_code=rng.choice([200, 201, 404, 500]),
            latency_ms=rng.random() * 100, request_bytes=rng.randrange(5000),
            response_bytes=rng.randrange(50000),
            api_key=f"cust_{min(int(rng.paretovariate(1.2)), keys)}",
            ip=rng.choice([f"203.0.113.{rng.randrange(256)}", None]),
            user_agent=rng.choice(AGENTS), country=rng.choice(["DE", "US", None]),
            function=rng.choice(["search", None]),
            tags={"region": "eu", "tier": "gold"} if rng.random() < 0.2 else None,
            batch_id=batch_id, batch_index=i,
        ))
    return out


def partition_of(record: EventRecord, n: int) -> int:
    key = f"{record.project_id}:{record.api_key}".encode()
    return (java_murmur2(key) & 0x7FFFFFFF) % n


def rows_as_records(table: pa.Table) -> list[EventRecord]:
    """Decoded rows back to EventRecords (batch_id/batch_index included), for comparing."""
    plain = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        plain[name] = col.to_pylist()
    out = []
    for i in range(table.num_rows):
        tags = plain["tags"][i]
        out.append(EventRecord(
            event_id=plain["event_id"][i], project_id=plain["project_id"][i],
            timestamp_us=plain["timestamp"][i], received_at_us=plain["received_at"][i],
            method=plain["method"][i], path=plain["path"][i], endpoint=plain["endpoint"][i],
            status_code=plain["status_code"][i], latency_ms=plain["latency_ms"][i],
            request_bytes=plain["request_bytes"][i], response_bytes=plain["response_bytes"][i],
            api_key=plain["api_key"][i], ip=plain["ip"][i], user_agent=plain["user_agent"][i],
            country=plain["country"][i], function=plain["function"][i],
            tags=None if tags is None else dict(tags),
            batch_id=plain["batch_id"][i], batch_index=plain["batch_index"][i],
        ))
    return out


def expected_order(batch: list[EventRecord], n: int) -> list[EventRecord]:
    """Partition by partition, batch order inside each: what the encoder promises."""
    return [r for _, _, r in sorted((partition_of(r, n), i, r) for i, r in enumerate(batch))]


storable = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
text = st.text(storable, min_size=1, max_size=30)
records = st.builds(
    EventRecord,
    event_id=text,
    project_id=st.sampled_from(["p1", "projé", "プロジェクト"]),
    timestamp_us=st.integers(BASE_US - 10**15, BASE_US + 10**15),
    received_at_us=st.integers(BASE_US - 10**15, BASE_US + 10**15),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    path=text.map(lambda s: "/" + s),
    endpoint=text.map(lambda s: "/" + s),
    status_code=st.integers(100, 599),
    latency_ms=st.floats(min_value=0, max_value=86_400_000, allow_nan=False),
    request_bytes=st.integers(0, 2**53),
    response_bytes=st.integers(0, 2**53),
    api_key=st.text(storable, max_size=20),
    ip=st.none() | st.ip_addresses().map(str),
    user_agent=st.none() | text,
    country=st.none() | st.sampled_from(["DE", "US", "JP"]),
    function=st.none() | text,
    tags=st.none() | st.dictionaries(text, st.text(storable, max_size=10), max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(records, min_size=1, max_size=40), st.integers(1, 16))
def test_every_field_survives_the_round_trip(batch: list[EventRecord], n: int) -> None:
    out = encode_event_records(batch, batch_id="b-1", partitioner=n)
    decoded = decode_records([r.value for r in out])
    assert decoded.poison == []
    stamped = [EventRecord(**{**{f: getattr(r, f) for f in r.__struct_fields__},
                              "batch_id": "b-1", "batch_index": i})
               for i, r in enumerate(batch)]
    assert rows_as_records(decoded.table) == expected_order(stamped, n)
    assert decoded.table.schema.equals(DECODED_SCHEMA)


@settings(max_examples=60, deadline=None)
@given(st.lists(records, min_size=1, max_size=40), st.integers(1, 16))
def test_records_group_by_the_kafka_partition_of_each_key(
    batch: list[EventRecord], n: int
) -> None:
    out = encode_event_records(batch, batch_id="b", partitioner=n)
    assert len({r.partition for r in out}) == len(out)  # one record per partition
    for record in out:
        rows = rows_as_records(read_record(record.value))
        assert {partition_of(r, n) for r in rows} == {record.partition}
        assert (java_murmur2(record.key) & 0x7FFFFFFF) % n == record.partition
        assert record.key == f"{rows[0].project_id}:{rows[0].api_key}".encode()
        positions = [r.batch_index for r in rows]
        assert positions == sorted(positions) and record.events == len(rows)


def test_encoding_is_deterministic() -> None:
    batch = make_batch(500)
    first = encode_event_records(batch, batch_id="b", partitioner=12)
    second = encode_event_records(list(batch), batch_id="b", partitioner=KeyPartitioner(12))
    assert [(r.partition, r.key, r.value) for r in first] == [
        (r.partition, r.key, r.value) for r in second]


def test_columns_give_the_same_bytes_as_event_records() -> None:
    batch = make_batch(300)
    from_records = encode_event_records(batch, batch_id="b", partitioner=12)
    cols = event_record_columns(batch)
    plain = {  # what a columnar gateway would hold: plain strings, int64 µs times
        name: (arr.dictionary_decode() if pa.types.is_dictionary(arr.type)
               else arr.cast(pa.int64()) if pa.types.is_timestamp(arr.type) else arr)
        for name, arr in cols.items()
    }
    for given_cols in (cols, plain, {k: v.to_pylist() for k, v in plain.items()}):
        out = encode_columns(given_cols, batch_id="b", partitioner=12)
        assert [r.value for r in out] == [r.value for r in from_records]


def test_columns_may_leave_out_optional_fields() -> None:
    out = encode_columns({
        "event_id": ["a", "b"], "project_id": ["p", "p"], "timestamp": [BASE_US, BASE_US + 1],
        "received_at": [BASE_US, BASE_US], "method": ["GET", "GET"], "path": ["/x", "/y"],
        "endpoint": ["/x", "/y"], "status_code": [200, 500], "latency_ms": [1.0, 2.0],
        "api_key": ["k", "k"],
    }, batch_id="b", partitioner=3)
    table = read_record(out[0].value)
    assert table.column("batch_index").to_pylist() == [0, 1]
    assert table.column("request_bytes").to_pylist() == [0, 0]
    assert table.column("tags").null_count == 2


def test_bad_columns_are_refused_with_the_name() -> None:
    good = {"event_id": ["a"], "project_id": ["p"], "timestamp": [1], "received_at": [1],
            "method": ["GET"], "path": ["/"], "endpoint": ["/"], "status_code": [200],
            "latency_ms": [1.0], "api_key": ["k"]}
    with pytest.raises(ValueError, match="'path' is required"):
        encode_columns({k: v for k, v in good.items() if k != "path"}, batch_id="b",
                       partitioner=1)
    with pytest.raises(ValueError, match="unknown v2 columns"):
        encode_columns({**good, "colour": ["red"]}, batch_id="b", partitioner=1)
    with pytest.raises(ValueError, match="'path' has 2 values"):
        encode_columns({**good, "path": ["/", "/"]}, batch_id="b", partitioner=1)
    with pytest.raises(ValueError, match="batch_id"):
        encode_columns(good, batch_id="", partitioner=1)
    assert encode_columns({k: [] for k in good}, batch_id="b", partitioner=1) == []


def test_large_groups_are_split_by_count_and_size_in_order() -> None:
    batch = make_batch(5000, keys=1)  # every event has the same key: one partition
    by_count = encode_event_records(batch, batch_id="b", partitioner=12, max_events=1200,
                                    max_bytes=10**9)
    assert [r.events for r in by_count] == [1200, 1200, 1200, 1200, 200]
    by_size = encode_event_records(batch, batch_id="b", partitioner=12, max_bytes=100_000)
    assert len(by_size) > 5 and all(len(r.value) <= 100_000 for r in by_size)
    for out in (by_count, by_size):
        decoded = decode_records([r.value for r in out])
        assert decoded.table.column("batch_index").to_pylist() == list(range(5000))
        assert len({r.partition for r in out}) == 1


def test_a_record_carries_each_dictionary_value_it_uses_once() -> None:
    out = encode_event_records(make_batch(1000, keys=500), batch_id="b", partitioner=12)
    for record in out:
        batch = pa.ipc.open_stream(record.value).read_next_batch()
        api_key = batch.column("api_key")
        assert len(api_key.dictionary) == len(set(api_key.to_pylist()))
        assert batch.column("batch_id").dictionary.to_pylist() == ["b"]


def test_format_version_is_in_the_schema_metadata() -> None:
    record = encode_event_records(make_batch(3), batch_id="b", partitioner=1)[0]
    reader = pa.ipc.open_stream(record.value)
    assert reader.schema.metadata == {FORMAT_KEY.encode(): b"2"}
    assert record.value.startswith(CANONICAL_PREFIX)


def test_metric_arrays_match_the_events() -> None:
    batches = [make_batch(400, seed=s, batch_id=f"b{s}") for s in range(5)]
    values = [r.value for i, b in enumerate(batches)
              for r in encode_event_records(b, batch_id=f"b{i}", partitioner=12)]
    arrays, poison = decode_metric_arrays(values)
    assert poison == []
    v2 = arrays.to_metric_columns()
    got = sorted(zip(v2.batch_id, v2.batch_index.tolist(), v2.project_id, v2.api_key,
                     v2.endpoint, v2.method, v2.timestamp_us.tolist(),
                     v2.received_at_us.tolist(), v2.status_code.tolist(),
                     v2.latency_ms.tolist(), v2.request_bytes.tolist(),
                     v2.response_bytes.tolist(), strict=True))
    want = sorted((f"b{i}", j, r.project_id, r.api_key, r.endpoint, r.method, r.timestamp_us,
                   r.received_at_us, r.status_code, r.latency_ms, r.request_bytes,
                   r.response_bytes)
                  for i, b in enumerate(batches) for j, r in enumerate(b))
    assert got == want
    assert arrays.api_key.type == pa.dictionary(pa.int32(), pa.string())
    assert len(arrays.batch_id.dictionary) == 5
    counts = np.bincount(arrays.positions, minlength=len(values))
    assert counts.tolist() == [pa.ipc.open_stream(v).read_all().num_rows for v in values]


def _table(batch: list[EventRecord]) -> pa.Table:
    return read_record(encode_event_records(batch, batch_id="b", partitioner=1)[0].value)


def _rewrite(table: pa.Table, **columns: pa.Array) -> bytes:
    """A record of a writer that does not check what we check (same schema)."""
    for name, arr in columns.items():
        table = table.set_column(table.schema.get_field_index(name),
                                 EVENT_RECORD_V2_SCHEMA.field(name), arr)
    return write_record(table.combine_chunks().to_batches()[0])


def _foreign(table: pa.Table, metadata: dict[str, str] | None) -> bytes:
    sink = pa.BufferOutputStream()
    schema = table.schema.with_metadata(metadata) if metadata else table.schema.remove_metadata()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table.replace_schema_metadata(schema.metadata))
    return sink.getvalue().to_pybytes()


def _poisons() -> dict[str, tuple[bytes, str]]:
    t = _table(make_batch(3, keys=1))
    d16 = pa.dictionary(pa.int16(), pa.string())
    return {
        "garbage": (b"not arrow at all", "not an Arrow IPC stream"),
        "empty": (b"", "not an Arrow IPC stream"),
        "v1 json": (b'{"v": 1, "event_id": "x"}', "not an Arrow IPC stream"),
        "truncated": (write_record(t.to_batches()[0])[:-40], "not an Arrow IPC stream"),
        "no format": (_foreign(t, None), "turnstile.format is absent"),
        "format 3": (_foreign(t, {FORMAT_KEY: "3"}), "turnstile.format is '3'"),
        "missing column": (_foreign(t.drop_columns(["path"]), {FORMAT_KEY: "2"}),
                           "'path' is missing"),
        "wrong type": (_foreign(t.set_column(7, "status_code", pa.array(["200"] * 3)),
                                {FORMAT_KEY: "2"}), "'status_code' has type string"),
        "null id": (_rewrite(t, event_id=pa.array(["a", None, "c"])), "event_id: null"),
        "nul in path": (_rewrite(t, path=pa.array(["/a", "/b\x00", "/c"])), "path: contains"),
        "nul in key": (_rewrite(t, api_key=pa.array(["k", "k", "k\x00"], d16)),
                       "api_key: contains"),
        "nul in tag": (_rewrite(t, tags=pa.array([None, {"a\x00": "b"}, None],
                                                 pa.map_(pa.string(), pa.string()))),
                       "tags: a tag key contains"),
        "nan latency": (_rewrite(t, latency_ms=pa.array([1.0, float("nan"), 2.0])),
                        "latency_ms: must be a finite number"),
        "negative index": (_rewrite(t, batch_index=pa.array([0, -1, 2], pa.int32())),
                           "batch_index: must be >= 0"),
    }


@pytest.mark.parametrize("case", sorted(_poisons()))
def test_poison_records_are_reported_and_the_rest_kept(case: str) -> None:
    bad, reason = _poisons()[case]
    good = [r.value for r in encode_event_records(make_batch(200), batch_id="b",
                                                  partitioner=4)]
    values = [good[0], bad, *good[1:]]
    decoded = decode_records(values)
    assert [(p.position, reason in p.reason) for p in decoded.poison] == [(1, True)], (
        decoded.poison)
    assert decoded.table.num_rows == 200
    assert decoded.positions.tolist() == [0, *range(2, len(values))]
    assert sorted(decoded.table.column("batch_index").to_pylist()) == list(range(200))
    arrays, poison = decode_metric_arrays(values)
    if case in ROW_PROBLEMS_OUTSIDE_METRICS:  # the projection does not read that column
        assert len(arrays) == 203 and poison == []
    else:
        assert len(arrays) == 200 and [p.position for p in poison] == [1]
        assert 1 not in set(arrays.positions.tolist())
    if case in ROW_PROBLEMS_OUTSIDE_METRICS or case.startswith(("nul", "nan", "negative")):
        assert read_record(bad).num_rows == 3  # alone it reads; the poll's row check finds it
    else:
        with pytest.raises(InvalidRecord):
            read_record(bad)


ROW_PROBLEMS_OUTSIDE_METRICS = {"null id", "nul in path", "nul in tag"}
ROW_CASES = ("null id", "nul in path", "nul in key", "nul in tag", "nan latency",
             "negative index")


@pytest.mark.parametrize("case", ROW_CASES)
def test_per_event_refuses_only_the_bad_event_of_a_record(case: str) -> None:
    bad, reason = _poisons()[case]
    good = [r.value for r in encode_event_records(make_batch(200), batch_id="b",
                                                  partitioner=4)]
    values = [good[0], bad, *good[1:]]
    row = 2 if case == "nul in key" else 1
    decoded = decode_records(values, per_event=True)
    assert [(p.position, p.row, reason in p.reason) for p in decoded.poison] == [
        (1, row, True)], decoded.poison
    assert decoded.table.num_rows == 202
    assert decoded.rows.tolist()[1] == 2
    assert np.bincount(decoded.row_positions()).tolist()[1] == 2
    value, event_id = event_value(bad, row)
    alone = read_record(value)
    assert alone.num_rows == 1 and alone.column("batch_index")[0].as_py() == (
        -1 if case == "negative index" else row)
    assert event_id == (None if case == "null id"
                        else read_record(bad)["event_id"][row].as_py())
    arrays, poison = decode_metric_arrays(values, per_event=True)
    if case in ROW_PROBLEMS_OUTSIDE_METRICS:
        assert len(arrays) == 203 and poison == []
    else:
        assert len(arrays) == 202 and [(p.position, p.row) for p in poison] == [(1, row)]


def test_a_poll_of_nothing_but_poison_gives_an_empty_table() -> None:
    decoded = decode_records([b"x", b"y"])
    assert decoded.table.num_rows == 0 and [p.position for p in decoded.poison] == [0, 1]
    arrays, poison = decode_metric_arrays([])
    assert len(arrays) == 0 and poison == []


def test_records_of_other_writers_are_read_field_by_field() -> None:
    batch = make_batch(50, keys=1)
    t = _table(batch)
    # Another library: plain strings instead of dictionaries, columns reordered, an
    # extra column from a newer writer, its own metadata next to the version.
    plain = pa.table({name: (t.column(name).cast(pa.string())
                             if pa.types.is_dictionary(t.column(name).type)
                             else t.column(name)) for name in reversed(t.column_names)})
    plain = plain.append_column("shiny_new_column", pa.array(range(50)))
    value = _foreign(plain, {FORMAT_KEY: "2", "writer": "arrow-rs"})
    assert not value.startswith(CANONICAL_PREFIX)
    ours = encode_event_records(batch, batch_id="b", partitioner=1)[0].value
    decoded = decode_records([value, ours])
    assert decoded.poison == []
    assert decoded.table.schema.equals(DECODED_SCHEMA)
    assert rows_as_records(decoded.table) == rows_as_records(t) * 2


def test_decoding_only_some_columns() -> None:
    out = encode_event_records(make_batch(100), batch_id="b", partitioner=3)
    decoded = decode_records([r.value for r in out], columns=["latency_ms", "event_id"])
    assert decoded.table.column_names == ["event_id", "latency_ms"]
    with pytest.raises(ValueError, match="unknown v2 columns"):
        decode_records([], columns=["nope"])


def test_committed_schema_file_matches_the_code() -> None:
    assert SCHEMA_FILE.read_bytes() == render_schema_file(), (
        "run `python -m schemas.records` and commit the result")
    assert load_schema_file().equals(EVENT_RECORD_V2_SCHEMA, check_metadata=True)


def test_a_record_of_several_batches_is_read_whole() -> None:
    """Another writer may put two record batches in one stream; the splice cannot tell."""
    t = _table(make_batch(40, keys=1))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, EVENT_RECORD_V2_SCHEMA) as writer:
        for batch in t.combine_chunks().to_batches(max_chunksize=15):
            writer.write_batch(batch)
    two = sink.getvalue().to_pybytes()
    assert two.startswith(CANONICAL_PREFIX)
    ours = encode_event_records(make_batch(10, seed=2), batch_id="b", partitioner=1)[0].value
    decoded = decode_records([two, ours])
    assert decoded.poison == [] and decoded.rows.tolist() == [40, 10]
    assert decoded.row_positions().tolist() == [0] * 40 + [1] * 10


def test_public_names_are_the_package_all() -> None:
    import schemas.records as records

    submodules = {"decode", "encode", "metrics", "schema"}
    public = {n for n in dir(records) if not n.startswith("_")} - submodules
    assert public == set(records.__all__)
    assert all(hasattr(records, n) for n in records.__all__)
    assert V2Record.__slots__


def test_a_poll_with_more_distinct_values_than_int16_holds_decodes() -> None:
    values = []
    for b in range(34):  # 34,000 distinct api_keys in one poll, 1,000 per record
        n = 1000
        values += [r.value for r in encode_columns({
            "event_id": [f"e{b}-{i}" for i in range(n)], "project_id": ["p"] * n,
            "timestamp": [BASE_US] * n, "received_at": [BASE_US] * n, "method": ["GET"] * n,
            "path": ["/"] * n, "endpoint": ["/"] * n, "status_code": [200] * n,
            "latency_ms": [1.0] * n, "api_key": [f"k{b}-{i}" for i in range(n)],
        }, batch_id=f"b{b}", partitioner=1)]
    arrays, poison = decode_metric_arrays(values)
    assert poison == [] and len(arrays) == 34_000
    assert len(arrays.api_key.dictionary) == 34_000
    assert arrays.api_key.type == pa.dictionary(pa.int32(), pa.string())
    assert arrays.api_key[33_999].as_py() == "k33-999"
