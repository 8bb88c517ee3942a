from collections import Counter

import numpy as np
import pytest

from tests.unit.loadgen.fixtures import gateway_records, small_spec
from turnstile_cli.loadgen import LATE_BEYOND, GroundTruth, generate, ground_truth


def test_counts_are_those_of_the_records_the_gateway_makes():
    traffic = generate(small_spec())
    truth = ground_truth(traffic)
    records = [r for batch in gateway_records(traffic) for r in batch]  # each batch once
    want = Counter()
    for r in records:
        day = np.datetime64(r.timestamp_us, "us").astype("datetime64[D]").astype(str)
        want[(r.project_id, r.api_key, day, r.endpoint, r.status_code // 100)] += 1
    assert {k: v[0] for k, v in truth.counts.items()} == dict(want)
    assert sum(truth.late_beyond.values()) == int((traffic.late == LATE_BEYOND).sum())
    assert sum(v[1] for v in truth.counts.values()) == sum(truth.late_beyond.values())
    assert truth.duplicate_batch_ids == [traffic.batch_ids[b]
                                         for b in traffic.duplicated_batches]
    assert sum(truth.requests_per_key_day().values()) == len(traffic)


def test_percentiles_are_exact_per_project_endpoint_and_day():
    traffic = generate(small_spec())
    truth = ground_truth(traffic)
    p = traffic.spec.projects.index("shop")
    mask = (traffic.project == p) & (traffic.endpoint == 0)
    n, p50, p95, p99 = truth.percentiles[("shop", "/v1/products/{id}", "2025-12-02")]
    assert n == mask.sum()
    assert [p50, p95, p99] == np.quantile(traffic.latency_us[mask] / 1000,
                                          [0.5, 0.95, 0.99]).tolist()


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_truth_file_round_trips_and_is_the_same_for_the_same_seed(tmp_path, suffix):
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    ground_truth(generate(small_spec())).save(first)
    ground_truth(generate(small_spec())).save(second)
    assert GroundTruth.load(first) == ground_truth(generate(small_spec()))
    if suffix == ".json":
        assert first.read_bytes() == second.read_bytes()


def test_loading_something_else_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a turnstile-loadgen-truth/1 file"):
        GroundTruth.load(path)
