import io
import pickle

import numpy as np
import pytest

from speed_layer.dedupe import RETRY_DEDUPE_HORIZON_MS
from speed_layer.items import WINDOW_US
from speed_layer.sketches import emitted_texts
from speed_layer.snapshot import FORMAT, SnapshotFormatError, dump_windows, load_windows
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
LATENESS_US = 5 * WINDOW_US


def windows(lateness_us: int = LATENESS_US) -> ShardWindows:
    return ShardWindows(allowed_lateness_us=lateness_us, compression=200)


def run(records, poll_size: int, lateness_us: int = LATENESS_US):
    w = windows(lateness_us)
    emitted, late = [], []
    for start in range(0, len(records), poll_size):
        late_rows = w.add(make_batch(records[start:start + poll_size], first_offset=start))
        if late_rows is not None:
            late.extend(late_rows.offset.tolist())
        emitted.append(w.emit())
    return w, emitted, late


def test_every_window_matches_an_independent_count():
    records = make_records(3000, minutes=4)
    _, emitted, late = run(records, 500)
    assert late == []
    assert_rows_equal(rows_as_dict(emitted), reference(records))


@pytest.mark.parametrize("poll_size", [1, 7, 333, 5000])
def test_result_does_not_depend_on_how_polls_are_cut(poll_size):
    records = make_records(1500, minutes=12, seed=3)  # shuffled over 12 min: some are late
    _, base_rows, base_late = run(records, 1500, lateness_us=2 * WINDOW_US)
    _, rows, late = run(records, poll_size, lateness_us=2 * WINDOW_US)
    assert late == base_late and len(late) > 0
    assert_rows_equal(rows_as_dict(rows), rows_as_dict(base_rows))


def test_late_event_inside_lateness_re_emits_the_full_window():
    w = windows()
    first = make_records(10, minutes=1, projects=1, keys=1, seed=1)
    w.add(make_batch(first))
    before = rows_as_dict([w.emit()])
    w.add(make_batch(make_records(5, minutes=1, start_us=T0_US + 3 * WINDOW_US, seed=2)))
    w.emit()
    again = first[:1]  # same series and minute, 3 minutes behind the newest event
    assert w.add(make_batch(again, first_offset=100)) is None
    after = rows_as_dict([w.emit()])
    key = next(k for k in before if k in after)
    assert after[key]["request_count"] == before[key]["request_count"] + 1
    assert len(after) == 1  # only the changed window is emitted


def test_event_beyond_lateness_is_reported_not_counted():
    w = windows(lateness_us=WINDOW_US)
    w.add(make_batch(make_records(5, minutes=1, start_us=T0_US + 10 * WINDOW_US)))
    w.emit()
    old = make_records(3, minutes=1, seed=9)
    late = w.add(make_batch(old, first_offset=50))
    assert late is not None
    assert late.offset.tolist() == [50, 51, 52]
    assert late.bucket_us.tolist() == [T0_US] * 3
    assert w.emit() is None
    assert w.late == 3


def test_closed_windows_are_forgotten():
    w = windows(lateness_us=WINDOW_US)
    w.add(make_batch(make_records(200, minutes=2)))
    w.emit()
    assert w.open_windows > 0
    w.add(make_batch(make_records(1, minutes=1, start_us=T0_US + 10 * WINDOW_US), first_offset=500))
    w.emit()
    assert w.open_windows == 1


def test_partial_emission_carries_only_changed_series():
    w = windows()
    w.add(make_batch(make_records(300, minutes=1)))
    assert len(w.emit()) > 1
    assert w.emit() is None
    one = make_records(1, minutes=1, seed=5)
    w.add(make_batch(one, first_offset=300))
    assert len(w.emit()) == 1


def test_same_batch_id_published_twice_counts_once():
    records = make_records(100, minutes=1)
    w = windows()
    w.add(make_batch(records[:60], batch_id="b1", produced_ms=1_000))
    w.add(make_batch(records[60:], batch_id="b1", produced_ms=1_010, first_offset=60,
                     first_index=60))
    w.add(make_batch(records, batch_id="b1", produced_ms=9_000, first_offset=100))
    w.add(make_batch(records[:10], batch_id="b2", produced_ms=9_000, first_offset=200))
    rows = rows_as_dict([w.emit()])
    assert sum(r["request_count"] for r in rows.values()) == 110
    assert w.duplicates == 100


def test_a_retry_after_a_partly_published_attempt_adds_exactly_the_missing_events():
    """Attempt 1 reached Kafka with 60 of its 100 events before failing; the retry
    publishes all 100, interleaved with another batch and cut across polls."""
    records = make_records(100, minutes=2, seed=12)
    other = make_records(30, minutes=2, seed=13)
    w = windows()
    w.add(make_batch(records[:35], batch_id="b1", produced_ms=1_000))
    w.add(make_batch(records[35:60], batch_id="b1", produced_ms=1_005, first_offset=35,
                     first_index=35))
    w.add(make_batch(records[:50] + other, batch_id=["b1"] * 50 + ["b2"] * 30,
                     produced_ms=30_000, first_offset=60))
    w.add(make_batch(records[50:], batch_id="b1", produced_ms=30_001, first_offset=140,
                     first_index=50))
    w.add(make_batch(records[90:], batch_id="b1", produced_ms=31_000, first_offset=190,
                     first_index=90))  # the same positions twice in one poll: a third try
    w.add(make_batch(records[95:] + records[95:], batch_id="b1", produced_ms=32_000,
                     first_offset=210, first_index=[95, 96, 97, 98, 99] * 2))
    rows = rows_as_dict([w.emit()])
    assert_rows_equal(rows, reference(records + other))
    assert w.duplicates == 60 + 10 + 10


def test_batch_ids_are_forgotten_after_the_horizon():
    w = windows(lateness_us=WINDOW_US)
    w.add(make_batch(make_records(5), batch_id="old", produced_ms=0))
    w.add(make_batch(make_records(5, seed=1), batch_id="new", produced_ms=12 * 60_000,
                     first_offset=5))
    w.emit()
    assert set(w.deduper.first_ms) == {"new"}


def test_digest_is_close_to_exact_percentiles():
    from speed_layer.digest import from_pg_text

    rng = np.random.default_rng(1)
    recs = make_records(20_000, minutes=1, projects=1, keys=1, seed=4)
    recs = [r.__class__(**{**{f: getattr(r, f) for f in r.__struct_fields__},
                           "endpoint": "/a", "method": "GET", "status_code": 200,
                           "latency_ms": float(v)})
            for r, v in zip(recs, rng.lognormal(3, 1, len(recs)), strict=True)]
    w = windows()
    for start in range(0, len(recs), 1000):
        w.add(make_batch(recs[start:start + 1000], first_offset=start))
        if start % 5000 == 0:
            w.emit()
    rows = w.emit()
    assert rows is not None and len(rows) == 1
    d = from_pg_text(emitted_texts(rows)[0].as_py())
    exact = np.array([r.latency_ms for r in recs])
    for q in (0.5, 0.95, 0.99):
        assert abs(d.quantile(q) / np.quantile(exact, q) - 1) < 0.01
    assert d.n_values == 20_000


def test_snapshot_round_trip_continues_exactly():
    records = make_records(2000, minutes=3, seed=8)
    w = windows()
    w.add(make_batch(records[:1000]))
    first = w.emit()
    w.add(make_batch(records[1000:1500], first_offset=1000))
    restored = restore(dump_windows(w))
    restored.add(make_batch(records[1500:], first_offset=1500))
    assert_rows_equal(rows_as_dict([first, restored.emit()]), reference(records))


def test_poison_records_become_dead_letters_and_the_rest_counts():
    records = make_records(10)
    batch = make_batch(records, extra_values=[b"{not json", b'{"v": 99}'])
    assert [d.offset for d in batch.dead_letters] == [10, 11]
    w = windows()
    w.add(batch)
    assert sum(r["request_count"] for r in rows_as_dict([w.emit()]).values()) == 10


def restore(data: bytes, lateness_us: int = LATENESS_US, compression: int = 200,
            horizon_ms: int = RETRY_DEDUPE_HORIZON_MS) -> ShardWindows:
    return load_windows(data, allowed_lateness_us=lateness_us, compression=compression,
                        dedupe_horizon_ms=horizon_ms)


def test_a_snapshot_keeps_dedupe_memory_late_rule_and_pending_values():
    records = make_records(3000, minutes=2, seed=11)  # windows past the raw limit too
    w = windows()
    w.add(make_batch(records[:1000], batch_id="b1"))
    w.emit()
    w.add(make_batch(records[1000:2000], batch_id="b2", first_offset=1000))  # pending
    restored = restore(dump_windows(w))
    assert restored.add(make_batch(records[:1000], batch_id="b1")) is None  # a retry
    assert restored.duplicates == 1000
    restored.add(make_batch(records[2000:], batch_id="b3", first_offset=2000))
    assert restored.max_ts_us == w.max_ts_us or restored.max_ts_us >= w.max_ts_us
    w.add(make_batch(records[2000:], batch_id="b3", first_offset=2000))
    want, got = rows_as_dict([w.emit()]), rows_as_dict([restored.emit()])
    assert_rows_equal(got, want)


def test_changed_lateness_and_compression_take_effect_after_a_restore():
    w = windows(lateness_us=5 * WINDOW_US)
    w.add(make_batch(make_records(200, minutes=1, seed=1)))
    w.add(make_batch(make_records(10, minutes=1, start_us=T0_US + 3 * WINDOW_US, seed=2),
                     first_offset=200))
    data = dump_windows(w)
    again = make_records(5, minutes=1, seed=3)  # the first minute, 3 minutes behind
    # Under the old 5-minute lateness these count; restored with 1 minute, they are late.
    assert windows(5 * WINDOW_US).add(make_batch(again)) is None
    strict = restore(data, lateness_us=WINDOW_US, compression=50)
    late = strict.add(make_batch(again, first_offset=300))
    assert late is not None and len(late) == 5
    texts = emitted_texts(strict.emit()).to_pylist()
    assert texts and all(" compression 50 " in t for t in texts)


def test_an_unknown_snapshot_format_fails_with_a_clear_message():
    w = windows()
    w.add(make_batch(make_records(20, minutes=1)))
    archive = dict(np.load(io.BytesIO(dump_windows(w))))
    archive["format"] = np.asarray(FORMAT + 1)
    buffer = io.BytesIO()
    np.savez(buffer, **archive)
    with pytest.raises(SnapshotFormatError, match=f"format {FORMAT + 1}, this version reads"):
        restore(buffer.getvalue())
    with pytest.raises(SnapshotFormatError, match="not a versioned snapshot"):
        restore(pickle.dumps({"windows": "as older versions pickled them"}))
