"""Kafka's default partitioner, checked against Kafka's own vectors and a plain port."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.records import KeyPartitioner, murmur2, partitions_for

pytestmark = pytest.mark.unit

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (and "" from other ports' tests).
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}


def java_murmur2(data: bytes) -> int:
    """Line-by-line port of Utils.murmur2 (Java ints emulated with masks), one key at a time."""
    mask = 0xFFFFFFFF
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) // 4
    for i in range(whole):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = data[4 * whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def test_murmur2_gives_kafkas_own_test_vectors() -> None:
    assert murmur2(list(KAFKA_VECTORS)).tolist() == list(KAFKA_VECTORS.values())


def test_reference_port_gives_kafkas_vectors_too() -> None:
    assert [java_murmur2(k) for k in KAFKA_VECTORS] == list(KAFKA_VECTORS.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=40))
def test_vectorised_hash_equals_the_one_key_port(keys: list[bytes]) -> None:
    assert murmur2(keys).tolist() == [java_murmur2(k) for k in keys]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=60).map(str.encode), min_size=1, max_size=30),
       st.integers(1, 1024))
def test_partition_is_to_positive_hash_modulo_count(keys: list[bytes], n: int) -> None:
    expected = [(java_murmur2(k) & 0x7FFFFFFF) % n for k in keys]
    assert partitions_for(keys, n).tolist() == expected


def test_known_partition_of_foobar() -> None:
    # toPositive(-790332482) = 1357151166; 1357151166 % 50 = 16
    assert partitions_for([b"foobar"], 50).tolist() == [16]


def test_no_keys_and_bad_counts() -> None:
    assert partitions_for([], 12).tolist() == []
    with pytest.raises(ValueError, match="partitions"):
        partitions_for([b"a"], 0)
    with pytest.raises(ValueError, match="partitions"):
        KeyPartitioner(0)


def test_cached_partitioner_agrees_and_stays_bounded() -> None:
    part = KeyPartitioner(12, limit=50)
    keys = [f"p:k{i}".encode() for i in range(120)]
    first = part(keys[:40]).tolist()
    again = part(keys[:40]).tolist()  # from the cache
    rest = part(keys[40:]).tolist()  # overflows the limit: cache cleared, still right
    assert first == again == partitions_for(keys[:40], 12).tolist()
    assert rest == partitions_for(keys[40:], 12).tolist()
    assert len(part._known) <= 80
