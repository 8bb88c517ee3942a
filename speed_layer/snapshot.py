"""The windows' recovery state as explicit arrays with a format number.

A snapshot is an ``.npz`` archive (numpy arrays only, read with ``allow_pickle=False``):
the live windows' columns, their series strings (UTF-8 bytes + offsets), the sketches
(raw values; centroids of the windows past the raw limit), the pending latencies, the
retry-dedupe memory and the watermark, plus ``format``. It holds *state*, not settings:
a shard restored under a new allowed lateness, digest compression or dedupe horizon runs
with the new values. A format this code does not know (or a snapshot from before formats
existed, a pickle) fails with a message saying what to do, never with a guess.
"""

from __future__ import annotations

import io
import zipfile
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from fastdigest import TDigest

from speed_layer.items import Int64s
from speed_layer.windows import STRING_COLUMNS, ShardWindows

FORMAT: Final = 1
"""The snapshot format this code writes and reads."""

_NUMBERS: Final = ("minute", "status_class", "count", "errors", "server_errors", "bytes_in",
                   "bytes_out", "lat_sum", "lat_min", "lat_max", "changed")


class SnapshotFormatError(RuntimeError):
    """A snapshot this version cannot read."""


def _strings_out(values: pa.Array, name: str, out: dict[str, npt.NDArray[np.generic]]) -> None:
    large = values.cast(pa.large_string())
    offsets = np.frombuffer(large.buffers()[1], np.int64)[large.offset:large.offset
                                                         + len(large) + 1]
    data = np.frombuffer(large.buffers()[2] or b"", np.uint8)
    out[f"{name}.offsets"] = offsets - offsets[0] if len(offsets) else np.zeros(1, np.int64)
    out[f"{name}.data"] = data[offsets[0]:offsets[-1]] if len(offsets) else data[:0]


def _strings_in(archive: dict[str, npt.NDArray[np.generic]], name: str) -> pa.Array:
    offsets = archive[f"{name}.offsets"].astype(np.int64)
    data = archive[f"{name}.data"].astype(np.uint8)
    return pa.LargeStringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data.tobytes())
    ).cast(pa.string())


def dump_windows(w: ShardWindows) -> bytes:
    """The state of ``w`` (live windows renumbered 0..n-1)."""
    slots = np.flatnonzero(w.live)
    renumber = np.full(w.capacity, -1, np.int64)
    renumber[slots] = np.arange(len(slots))
    out: dict[str, npt.NDArray[np.generic]] = {
        "format": np.asarray(FORMAT, np.int64),
        "max_ts_us": np.asarray(w.max_ts_us, np.int64),
        "late": np.asarray(w.late, np.int64),
        "duplicates": np.asarray(w.duplicates, np.int64),
    }
    for name in _NUMBERS:
        out[f"windows.{name}"] = getattr(w, name)[slots]
    for name in STRING_COLUMNS:
        _strings_out(w.strings[name].take(getattr(w, f"{name}_code")[slots]),
                     f"windows.{name}", out)
    sk = w.sketches
    out["raw.slot"], out["raw.value"] = renumber[sk.raw_slot], sk.raw_value
    heavy = slots[sk.heavy[slots]]
    # One step per window past the raw limit (at most one per RAW_LIMIT events).
    centroids = [np.asarray(sk.digests[s].centroids, np.float64).reshape(-1, 2)
                 for s in heavy.tolist()]
    out["digest.slot"] = renumber[heavy]
    out["digest.sizes"] = np.asarray([len(c) for c in centroids], np.int64)
    out["digest.centroids"] = (np.concatenate(centroids) if centroids
                               else np.zeros((0, 2), np.float64))
    pending_slots = (np.concatenate(w.pending_slots) if w.pending_slots
                     else np.zeros(0, np.int64))
    out["pending.slot"] = renumber[pending_slots]
    out["pending.value"] = (np.concatenate(w.pending_values) if w.pending_values
                            else np.zeros(0, np.float64))
    d = w.deduper
    ids = list(d.first_ms)  # one step per remembered batch id
    _strings_out(pa.array(ids, pa.string()), "dedupe.ids", out)
    out["dedupe.first_ms"] = np.asarray([d.first_ms[i] for i in ids], np.int64)
    bitmaps = [d.counted.get(i, np.zeros(0, np.bool_)) for i in ids]
    out["dedupe.sizes"] = np.asarray([len(b) for b in bitmaps], np.int64)
    out["dedupe.bitmaps"] = np.concatenate(bitmaps) if bitmaps else np.zeros(0, np.bool_)
    out["dedupe.newest_ms"] = np.asarray(d.newest_ms, np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **out)
    return buffer.getvalue()


def _open(data: bytes) -> dict[str, npt.NDArray[np.generic]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            content = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SnapshotFormatError(
            f"the speed layer's recovery snapshot ({len(data)} bytes) is not a versioned "
            f"snapshot (format {FORMAT} or later; older versions pickled their windows): "
            f"{exc}. Remove the recovery store (<state>/speed_layer/recovery) to start from "
            "the committed offsets, or run the version that wrote it") from None
    version = int(content["format"]) if "format" in content else None
    if version != FORMAT:
        raise SnapshotFormatError(
            f"the speed layer's recovery snapshot has format {version}, this version reads "
            f"format {FORMAT} only. Run the version that wrote it, or remove the recovery "
            "store (<state>/speed_layer/recovery) to start over")
    return content


def load_windows(data: bytes, *, allowed_lateness_us: int, compression: int,
                 dedupe_horizon_ms: int) -> ShardWindows:
    """Windows restored from ``data`` that run with the settings given here."""
    a = _open(data)
    w = ShardWindows(allowed_lateness_us=allowed_lateness_us, compression=compression,
                     dedupe_horizon_ms=dedupe_horizon_ms)
    n = len(a["windows.minute"])
    capacity = 1024
    while capacity < n:
        capacity *= 2
    if capacity > w.capacity:
        w._alloc(capacity)
    slots: Int64s = w._take_slots(n)
    slots = np.sort(slots)
    for name in _NUMBERS:
        getattr(w, name)[slots] = a[f"windows.{name}"]
    w.live[slots] = True
    w._name_slots(slots, {name: _strings_in(a, f"windows.{name}") for name in STRING_COLUMNS})
    sk = w.sketches
    sk.raw_slot = slots[a["raw.slot"].astype(np.int64)]
    sk.raw_value = a["raw.value"].astype(np.float64)
    bounds = np.r_[0, np.cumsum(a["digest.sizes"])].tolist()
    centroids = a["digest.centroids"]
    for i, slot in enumerate(slots[a["digest.slot"].astype(np.int64)].tolist()):
        part = centroids[bounds[i]:bounds[i + 1]]
        sk.digests[slot] = TDigest.from_dict({"max_centroids": compression, "centroids": [
            {"m": float(m), "c": float(c)} for m, c in part.tolist()]})
        sk.heavy[slot] = True
    if len(a["pending.slot"]):
        w.pending_slots = [slots[a["pending.slot"].astype(np.int64)]]
        w.pending_values = [a["pending.value"].astype(np.float64)]
    w.max_ts_us = int(a["max_ts_us"])
    w.late, w.duplicates = int(a["late"]), int(a["duplicates"])
    d = w.deduper
    ids = _strings_in(a, "dedupe.ids").to_pylist()
    d.first_ms = dict(zip(ids, a["dedupe.first_ms"].tolist(), strict=True))
    ends = np.cumsum(a["dedupe.sizes"]).tolist()
    bitmaps = np.split(a["dedupe.bitmaps"].astype(np.bool_), ends[:-1]) if ids else []
    d.counted = {i: b.copy() for i, b in zip(ids, bitmaps, strict=True) if len(b)}
    d.newest_ms = int(a["dedupe.newest_ms"])
    return w
