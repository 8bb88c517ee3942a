import numpy as np
import pytest

from schemas.event import EventRecord
from speed_layer import digest
from speed_layer.items import WINDOW_US
from speed_layer.sketches import RAW_LIMIT, emitted_texts, pg_texts
from speed_layer.windows import ShardWindows
from tests.unit.speed_layer.fixtures import (
    T0_US,
    assert_rows_equal,
    make_batch,
    make_records,
    reference,
    rows_as_dict,
)

pytestmark = pytest.mark.unit


def windows() -> ShardWindows:
    return ShardWindows(allowed_lateness_us=WINDOW_US, compression=200)


def one_series(latencies, *, start_us: int = T0_US, project: str = "p", api_key: str = "k"):
    return [EventRecord(event_id=f"e{i}", project_id=project, timestamp_us=start_us + i,
                        received_at_us=start_us + i, method="GET", path="/a", endpoint="/a",
                        status_code=200, latency_ms=float(v), api_key=api_key)
            for i, v in enumerate(latencies)]


def centroids(text: str) -> list[tuple[float, int]]:
    body = text.partition("centroids")[2].split("(")[1:]
    return [(float(p.split(",")[0]), int(p.split(",")[1].rstrip(") "))) for p in body]


def test_bulk_text_matches_the_one_at_a_time_printer():
    rng = np.random.default_rng(2)
    raw = tuple(sorted(rng.lognormal(3, 1, 5).tolist()))
    big = digest.build(rng.lognormal(3, 1, 5000), 200).merge(
        digest.build(rng.lognormal(2, 1, 3000), 200))
    means, counts = digest.integer_centroids(big)
    texts = pg_texts(np.r_[raw, means], np.r_[np.ones(len(raw), np.int64), counts],
                     np.asarray([len(raw), len(means)]), 200).to_pylist()
    for got, want in zip(texts, [digest.to_pg_text(raw, 200), digest.to_pg_text(big, 200)],
                         strict=True):
        assert got.split("centroids")[0] == want.split("centroids")[0]
        assert centroids(got) == centroids(want)


def test_window_crossing_the_raw_limit_keeps_every_value_counted():
    rng = np.random.default_rng(5)
    values = rng.lognormal(3, 1, RAW_LIMIT + 40)
    records = one_series(values)
    w = windows()
    w.add(make_batch(records[:50]))
    first = w.emit()
    assert first is not None and centroids(emitted_texts(first)[0].as_py()) == [
        (v, 1) for v in sorted(values[:50].tolist())]
    w.add(make_batch(records[50:], first_offset=50))
    rows = w.emit()
    assert rows is not None and len(rows) == 1
    text = emitted_texts(rows)[0].as_py()
    assert text.startswith(f"flags 1 count {len(values)} compression 200 ")
    assert sum(c for _, c in centroids(text)) == len(values)
    assert abs(digest.from_pg_text(text).quantile(0.5) / np.median(values) - 1) < 0.05


def test_series_whose_joined_names_look_alike_stay_apart():
    a = one_series([1.0, 2.0], project="p:1", api_key="x")
    b = one_series([5.0], project="p", api_key=":1x")
    w = windows()
    w.add(make_batch(a + b))
    got = rows_as_dict([w.emit()])
    assert_rows_equal(got, reference(a + b))
    assert len(got) == 2


def test_closed_windows_free_their_raw_values_and_slots_are_reused():
    w = windows()
    w.add(make_batch(make_records(300, minutes=1, seed=6)))
    w.emit()
    assert len(w.sketches.raw_value) == 300
    later = make_records(10, minutes=1, seed=7, start_us=T0_US + 5 * WINDOW_US)
    w.add(make_batch(later, first_offset=300))
    rows = w.emit()
    assert_rows_equal(rows_as_dict([rows]), reference(later))
    assert len(w.sketches.raw_value) == 10
    assert w.open_windows == len(reference(later))
