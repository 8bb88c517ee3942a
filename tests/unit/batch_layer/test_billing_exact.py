"""Billing stays exact although duplicates are found through a 64-bit hash of the id.

The hash only nominates candidates; these tests pin that the exact (project_id, event_id)
comparison and the keep-first rule decide, including when every row is a candidate (what a
hash collision amounts to).
"""

import msgspec
import numpy as np
import pytest

import batch_layer.billing as billing
from batch_layer.lake import open_lake
from batch_layer.settings import BatchSettings
from schemas.lake import LakeSettings
from tests.unit.batch_layer.fixtures import make_events, truth_of
from tests.unit.batch_layer.test_billing import run, tier_for, write_roll


def lake_at(tmp_path):
    return open_lake(BatchSettings(lake=LakeSettings(uri=str(tmp_path))))


def by_key(rows):
    return {(r.project_id, r.api_key): r for r in rows}


def test_repeated_values_lists_each_repeated_hash_once_ascending():
    values = np.array([9, 3, 7, 3, 9, 9, 1, 2**64 - 1, 2**64 - 1], np.uint64)
    assert billing.repeated_values(values).tolist() == [3, 9, 2**64 - 1]
    assert billing.repeated_values(np.array([5, 6], np.uint64)).size == 0
    assert billing.repeated_values(np.array([], np.uint64)).size == 0


def test_same_event_id_in_two_projects_is_two_events(tmp_path):
    lake = lake_at(tmp_path)
    [event] = make_events(1, projects=("acme",))
    other = msgspec.structs.replace(event, project_id="globex")
    write_roll(lake, [event], 0, 0, ["b0"])
    write_roll(lake, [other], 1, 0, ["b1"])
    got = by_key(run(lake))
    assert {k: r.total_requests for k, r in got.items()} == {
        ("acme", event.api_key): 1, ("globex", event.api_key): 1}
    assert all(r.duplicates_removed == 0 for r in got.values())


def test_first_received_copy_is_kept_even_in_a_later_file(tmp_path):
    lake = lake_at(tmp_path)
    [event] = make_events(1, projects=("acme",))
    late = msgspec.structs.replace(event, endpoint="/v1/search", status_code=200,
                                   request_bytes=10, received_at_us=event.timestamp_us + 900)
    early = msgspec.structs.replace(event, endpoint="/health", status_code=503,
                                    request_bytes=7, received_at_us=event.timestamp_us + 5)
    write_roll(lake, [late], 0, 0, ["b0"])  # part-0000: listed and read first
    write_roll(lake, [early], 7, 50, ["b1"])
    [row] = run(lake)
    assert (row.total_requests, row.requests_by_tier) == (1, {"default": 1})
    assert (row.error_count, row.server_error_count, row.bytes_in) == (1, 1, 7)
    assert (row.raw_count, row.duplicates_removed, row.duplicates_in_stream) == (2, 1, 1)


@pytest.mark.parametrize(("first", "second"), [((3, 0), (1, 900)), ((4, 20), (4, 10))])
def test_ties_on_receipt_keep_the_lowest_partition_then_offset(tmp_path, first, second):
    lake = lake_at(tmp_path)
    [event] = make_events(1, projects=("acme",))
    a = msgspec.structs.replace(event, endpoint="/v1/search", request_bytes=1)
    b = msgspec.structs.replace(event, endpoint="/health", request_bytes=2)
    write_roll(lake, [a], *first, ["b0"])
    write_roll(lake, [b], *second, ["b0"])  # same batch id: a retry the stream dropped
    [row] = run(lake)
    assert (row.requests_by_tier, row.bytes_in) == ({"default": 1}, 2)
    assert (row.duplicates_removed, row.duplicates_in_stream) == (1, 0)


def test_colliding_hashes_never_merge_distinct_events(tmp_path, monkeypatch):
    """Shrink the hash to 2 bits: every row is a candidate and distinct ids share hashes."""
    lake = lake_at(tmp_path)
    events = make_events(800, seed=11)
    shared_ids = [msgspec.structs.replace(e, project_id="globex" if e.project_id == "acme"
                                          else "acme") for e in events[:50]]
    write_roll(lake, events, 0, 0, ["b0"] * len(events))
    write_roll(lake, events[100:160], 2, 0, ["b5"] * 60)  # resent across files
    write_roll(lake, shared_ids, 3, 0, ["b6"] * 50)  # same ids, other project: not dupes
    normal = run(lake)
    exact = "hash(project_id, event_id)"
    for name in ("_ID_HASHES", "_COPIES"):
        assert exact in getattr(billing, name)
        monkeypatch.setattr(billing, name, getattr(billing, name).replace(
            exact, f"({exact} % 4)"))
    forced = run(lake)
    assert forced == normal
    truth = truth_of(events + shared_ids, tier_for)
    assert {(r.project_id, r.api_key, r.day): r.total_requests for r in forced} == dict(
        truth.total)
    assert {(r.project_id, r.api_key, r.day, t): n for r in forced
            for t, n in r.requests_by_tier.items()} == dict(truth.tiers)
    assert sum(r.duplicates_removed for r in forced) == 60
    assert sum(r.duplicates_in_stream for r in forced) == 60
