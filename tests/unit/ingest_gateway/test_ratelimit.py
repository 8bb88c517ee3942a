import pytest

from ingest_gateway.ratelimit import TokenBuckets, retry_after_header

pytestmark = pytest.mark.unit


def test_burst_then_refill_at_the_rate():
    buckets = TokenBuckets(rate_per_s=100, burst=1000)
    assert buckets.take("k", 1000, now=0.0) == 0
    wait = buckets.take("k", 100, now=0.0)
    assert wait == pytest.approx(1.0)
    assert buckets.take("k", 100, now=0.5) == pytest.approx(0.5)
    assert buckets.take("k", 100, now=1.0) == 0


def test_keys_have_separate_buckets():
    buckets = TokenBuckets(rate_per_s=1, burst=10)
    assert buckets.take("a", 10, now=0.0) == 0
    assert buckets.take("b", 10, now=0.0) == 0
    assert buckets.take("a", 1, now=0.0) > 0


def test_refill_never_exceeds_the_burst():
    buckets = TokenBuckets(rate_per_s=1000, burst=10)
    buckets.take("k", 1, now=0.0)
    assert buckets.take("k", 11, now=100.0) > 0
    assert buckets.take("k", 10, now=100.0) == 0


def test_disabled_limit_always_allows():
    buckets = TokenBuckets(rate_per_s=0, burst=1)
    assert not buckets.enabled
    assert buckets.take("k", 10**9, now=0.0) == 0


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (30, "30")])
def test_retry_after_is_whole_seconds_at_least_one(wait, header):
    assert retry_after_header(wait) == header
