"""fastdigest sketches ↔ the text format of PostgreSQL's ``tdigest`` extension.

The extension wants ``flags 1 count N compression C centroids K (mean, count) ...`` with
integer counts that sum to N and centroids sorted by mean. fastdigest keeps float counts
(after merges), so counts are rounded on their running sum: every centroid gets
``round(cum_i) - round(cum_{i-1})``, which keeps the total exact and the order intact;
centroids that round to zero weight are dropped.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt
from fastdigest import TDigest

RAW_LIMIT = 64
"""Up to this many values a window keeps them raw (one centroid of weight 1 each)."""


def build(values: npt.NDArray[np.float64], compression: int) -> TDigest:
    """A digest of a batch of values, built in one call (never value by value)."""
    return TDigest.from_values(values, max_centroids=compression)  # type: ignore[arg-type]


def fold(digest: TDigest | None, values: npt.NDArray[np.float64], compression: int) -> TDigest:
    """``digest`` with ``values`` added; the digest itself is not changed."""
    fresh = build(values, compression)
    if digest is None:
        return fresh
    return digest.merge(fresh)


def integer_centroids(digest: TDigest) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Means and integer counts (cumulative rounding), zero-weight centroids removed."""
    centroids = cast(list[dict[str, float]], digest.to_dict()["centroids"])
    means = np.fromiter((c["m"] for c in centroids), np.float64, len(centroids))
    weights = np.fromiter((c["c"] for c in centroids), np.float64, len(centroids))
    order = np.argsort(means, kind="stable")
    means, weights = means[order], weights[order]
    cum = np.rint(np.cumsum(weights)).astype(np.int64)
    counts = np.diff(cum, prepend=0)
    keep = counts > 0
    return means[keep], counts[keep]


def to_pg_text(digest: TDigest | tuple[float, ...] | None, compression: int) -> str:
    """The ``tdigest`` extension's text input for ``digest`` (or for sorted raw values)."""
    if digest is None:
        return ""
    if isinstance(digest, tuple):
        body = " ".join(f"({v!r}, 1)" for v in digest)
        n = len(digest)
        return f"flags 1 count {n} compression {compression} centroids {n} {body}"
    means, counts = integer_centroids(digest)
    total = int(counts.sum())
    body = " ".join(f"({m!r}, {c})" for m, c in zip(means.tolist(), counts.tolist(), strict=True))
    return (
        f"flags 1 count {total} compression {compression} centroids {len(counts)} {body}"
    ).rstrip()


def from_pg_text(text: str) -> TDigest:
    """Parse the extension's text output back into a digest (tests and tools)."""
    head, _, body = text.partition("centroids")
    fields = head.split()
    compression = int(fields[fields.index("compression") + 1])
    pairs = body.split("(")[1:]
    means = [float(p.split(",")[0]) for p in pairs]
    counts = [float(p.split(",")[1].rstrip(") ")) for p in pairs]
    return TDigest.from_dict(
        {
            "max_centroids": compression,
            "centroids": [{"m": m, "c": c} for m, c in zip(means, counts, strict=True)],
        }
    )
