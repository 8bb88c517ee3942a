import pytest

from ingest_gateway.auth import Denial, IpPrivacy, KeyCache, WriteKey, secret_from_headers

pytestmark = pytest.mark.unit

KEY = WriteKey(key_id="key_1", project_id="p1", ip_privacy=IpPrivacy.KEEP)


def test_cache_entries_expire_after_the_ttl():
    cache = KeyCache(ttl_s=30, negative_ttl_s=2)
    cache.put(b"d", KEY, now=100.0)
    assert cache.get(b"d", now=129.9) == KEY
    assert cache.get(b"d", now=130.0) is None


def test_unknown_keys_are_cached_for_the_shorter_ttl():
    cache = KeyCache(ttl_s=30, negative_ttl_s=2)
    cache.put(b"d", Denial.UNKNOWN, now=0.0)
    assert cache.get(b"d", now=1.9) is Denial.UNKNOWN
    assert cache.get(b"d", now=2.0) is None


def test_zero_negative_ttl_caches_nothing():
    cache = KeyCache(ttl_s=30, negative_ttl_s=0)
    cache.put(b"d", Denial.UNKNOWN, now=0.0)
    assert cache.get(b"d", now=0.0) is None


def test_cache_is_bounded():
    cache = KeyCache(ttl_s=30, negative_ttl_s=2, max_entries=3)
    for i in range(10):
        cache.put(bytes([i]), KEY, now=0.0)
    assert sum(cache.get(bytes([i]), now=0.0) is not None for i in range(10)) <= 3
    assert cache.get(bytes([9]), now=0.0) == KEY


@pytest.mark.parametrize(
    ("x_api_key", "authorization", "expected"),
    [
        ("tsk_w_abc", None, "tsk_w_abc"),
        (None, "Bearer tsk_w_abc", "tsk_w_abc"),
        (None, "bearer   tsk_w_abc ", "tsk_w_abc"),
        ("tsk_w_1", "Bearer tsk_w_2", "tsk_w_1"),
        (None, "Basic dXNlcjpwdw==", None),
        (None, "Bearer ", None),
        (None, None, None),
    ],
)
def test_secret_comes_from_x_api_key_or_bearer(x_api_key, authorization, expected):
    assert secret_from_headers(x_api_key, authorization) == expected
