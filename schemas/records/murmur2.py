"""Kafka's default partitioner, so every tool puts a key where Turnstile does.

The Java client (and librdkafka's ``murmur2``/``murmur2_random`` partitioners) map a key to
``toPositive(murmur2(key)) % partitions`` with ``toPositive(h) = h & 0x7fffffff``. The hash
runs vectorised over the distinct keys of a batch (a batch has few of them): one numpy
step per 4-byte block of the longest key, whatever the number of keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

_SEED: Final = np.uint32(0x9747B28C)
_M: Final = np.uint32(0x5BD1E995)
_R: Final = np.uint32(24)

U32s = npt.NDArray[np.uint32]
I32s = npt.NDArray[np.int32]


def murmur2(keys: Sequence[bytes]) -> I32s:
    """Kafka's murmur2 of each key, as the signed 32-bit ints the Java client returns."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    blocks = lengths // 4
    # One row per key, zero-padded to whole words plus one: the word after a key's last
    # whole block holds its 0-3 tail bytes and zeros, which is the tail's XOR exactly.
    width = 4 * (int(blocks.max()) + 1)
    flat = np.frombuffer(b"".join(keys), dtype=np.uint8)
    starts = np.cumsum(lengths) - lengths
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(flat)) - np.repeat(starts, lengths)
    padded = np.zeros((n, width), dtype=np.uint8)
    padded[rows, cols] = flat
    words = padded.view("<u4")
    with np.errstate(over="ignore"):
        h = _SEED ^ lengths.astype(np.uint32)
        for j in range(int(blocks.max())):
            k = words[:, j] * _M
            k ^= k >> _R
            k *= _M
            h = np.where(j < blocks, (h * _M) ^ k, h)
        tail = words[np.arange(n), blocks]
        h = np.where(lengths % 4 != 0, (h ^ tail) * _M, h)
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
    return h.astype(np.uint32).view(np.int32)


def partitions_for(keys: Sequence[bytes], partitions: int) -> I32s:
    """The partition Kafka's default partitioner gives each key: ``(h & 0x7fffffff) % n``."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    positive = murmur2(keys).view(np.uint32) & np.uint32(0x7FFFFFFF)
    return (positive % np.uint32(partitions)).astype(np.int32)
