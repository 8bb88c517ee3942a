"""Billing SQL against a lake folder written here (DuckDB runs in-process)."""

import random
from datetime import date

import numpy as np
import pytest

from batch_layer.billing import TierRule, compute_usage, connect, register_day, tier_of
from batch_layer.lake import open_lake, write_parquet_atomic
from batch_layer.rolls import ConsumedBatch, PartitionBuffer, decode_batch, roll_files
from batch_layer.settings import BatchSettings
from schemas.lake import LakeSettings
from tests.records import one_per_event
from tests.unit.batch_layer.fixtures import DAY, make_events, truth_of

TIERS = {"acme": [TierRule("/v1/search*", "premium"), TierRule("/v1/*", "standard")]}


def tier_for(project, endpoint):
    return tier_of(endpoint, TIERS.get(project, ()), "default")


def test_first_matching_pattern_wins_and_unmatched_is_default():
    rules = TIERS["acme"]
    assert tier_of("/v1/search/advanced", rules, "d") == "premium"
    assert tier_of("/v1/users/{id}", rules, "d") == "standard"
    assert tier_of("/health", rules, "d") == "d"
    assert tier_of("/V1/search", rules, "d") == "d"  # case-sensitive, like routes


def write_roll(lake, records, partition, first_offset, batch_ids):
    values = one_per_event(records, batch_id=batch_ids)
    n = len(values)
    batch = ConsumedBatch(
        partitions=np.full(n, partition, np.int32),
        offsets=np.arange(first_offset, first_offset + n, dtype=np.int64),
        keys=[None] * n, values=values,
        timestamps_ms=np.zeros(n, np.int64),
    )
    d = decode_batch(batch)
    buffer = PartitionBuffer(partition=partition, opened_at=0)
    buffer.add(d.events, d.quarantine, d.quarantine_day, first_offset, first_offset + n - 1)
    for f in roll_files(buffer):
        write_parquet_atomic(lake, lake.path(f.relative_path), f.table, 1)


def run(lake, day=DAY):
    con = connect(2, "1GB")
    register_day(con, lake, day)
    return compute_usage(con, day, TIERS, "default")


def test_usage_is_exact_after_dedupe_and_counts_duplicates_by_kind(tmp_path):
    lake = open_lake(BatchSettings(lake=LakeSettings(uri=str(tmp_path))))
    events = make_events(3000, seed=7)
    rng = random.Random(3)
    write_roll(lake, events, 0, 0, ["b0"] * len(events))
    # a retried batch (same batch id) and an independent resend (new batch id), on
    # another partition and offset, plus a copy inside the same file
    retried = rng.sample(events, 40)
    resent = rng.sample(events, 25)
    write_roll(lake, retried, 1, 0, ["b0"] * len(retried))
    write_roll(lake, resent, 1, 1000, ["b9"] * len(resent))
    rows = run(lake)
    truth = truth_of(events, tier_for)
    got = {(r.project_id, r.api_key, r.day): r for r in rows}
    assert set(got) == set(truth.total)
    for k, r in got.items():
        assert r.total_requests == truth.total[k]
        assert r.error_count == truth.errors[k]
        assert r.server_error_count == truth.server_errors[k]
        assert r.bytes_in == truth.bytes_in[k]
        assert r.bytes_out == truth.bytes_out[k]
        expected_tiers = {t: n for (p, a, d, t), n in truth.tiers.items() if (p, a, d) == k}
        assert r.requests_by_tier == expected_tiers
    assert sum(r.duplicates_removed for r in rows) == 65
    # the stream drops same-batch retries, so only resent copies were counted by it
    assert sum(r.duplicates_in_stream for r in rows) == 25


def test_a_day_without_files_has_no_usage(tmp_path):
    lake = open_lake(BatchSettings(lake=LakeSettings(uri=str(tmp_path))))
    assert run(lake, date(2020, 1, 1)) == []


@pytest.mark.parametrize("copies", [2, 3])
def test_kept_copy_is_the_first_received(tmp_path, copies):
    lake = open_lake(BatchSettings(lake=LakeSettings(uri=str(tmp_path))))
    [event] = make_events(1, projects=("acme",))
    for i in range(copies):
        write_roll(lake, [event], i, 10, [f"b{i}"])
    [row] = run(lake)
    assert row.total_requests == 1
    assert row.duplicates_removed == copies - 1
    assert row.duplicates_in_stream == copies - 1
