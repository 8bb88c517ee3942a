import numpy as np
import pytest

from speed_layer import digest

pytestmark = pytest.mark.unit


def test_raw_values_print_as_unit_centroids():
    assert digest.to_pg_text((1.5, 2.0), 200) == (
        "flags 1 count 2 compression 200 centroids 2 (1.5, 1) (2.0, 1)")


def test_merged_digest_counts_are_integers_summing_to_n():
    values = np.random.default_rng(0).lognormal(3, 1, 50_000)
    merged = digest.build(values[:20_000], 200).merge(digest.build(values[20_000:], 200))
    means, counts = digest.integer_centroids(merged)
    assert counts.sum() == 50_000 and (counts > 0).all()
    assert (np.diff(means) >= 0).all()
    text = digest.to_pg_text(merged, 200)
    assert text.startswith(f"flags 1 count 50000 compression 200 centroids {len(counts)} (")
    back = digest.from_pg_text(text)
    assert abs(back.quantile(0.99) / np.quantile(values, 0.99) - 1) < 0.01
