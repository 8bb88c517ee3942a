"""What the speed layer refuses before the windows, how a write is cut, and how a step's
error is logged."""

import logging

import msgspec
import numpy as np
import pytest
from bytewax.testing import TestingSource, run_main

from schemas.codec import record_key
from schemas.records import read_record
from speed_layer.dataflow import build_flow
from speed_layer.decode import decode_poll
from speed_layer.items import Emission, digest_compression
from speed_layer.settings import SpeedSettings
from speed_layer.sketches import digest_texts
from speed_layer.split import halves, rows_of, slice_metrics
from speed_layer.windows import ShardWindows
from tests.records import one_per_event
from tests.unit.speed_layer.fixtures import (
    assert_rows_equal,
    make_batch,
    make_records,
    reference,
    rows_as_dict,
)

pytestmark = pytest.mark.unit


def test_records_with_nul_text_are_dead_lettered_and_the_rest_stays_aligned():
    records = make_records(6, minutes=1, project_prefix="p")
    records[1] = msgspec.structs.replace(records[1], endpoint="/a\x00b")
    records[4] = msgspec.structs.replace(records[4], api_key="k\x00", project_id="p0")
    keys = [record_key(r.project_id, r.api_key) for r in records]
    batch = decode_poll(topic="t", partition=3, values=one_per_event(records), keys=keys,
                        offsets=range(100, 106), produced_ms=[1, 2, 3, 4, 5, 6])
    assert batch.offsets.tolist() == [100, 102, 103, 105]
    assert batch.produced_ms.tolist() == [1, 3, 4, 6]
    assert batch.columns.endpoint.to_pylist() == [records[i].endpoint for i in (0, 2, 3, 5)]
    assert [(d.offset, d.partition, d.kind, d.project_id, d.component)
            for d in batch.dead_letters] == [
        (101, 3, "unstorable", records[1].project_id, "speed_layer"),
        (104, 3, "unstorable", "p0", "speed_layer")]
    assert batch.dead_letters[0].reason.startswith("endpoint: contains U+0000")
    assert batch.dead_letters[1].reason.startswith("api_key: contains U+0000")
    assert batch.dead_letters[0].key == keys[1]
    assert read_record(batch.dead_letters[1].value).column("event_id").to_pylist() == [
        records[4].event_id]
    w = ShardWindows(allowed_lateness_us=300_000_000, compression=200)
    w.add(batch)
    assert_rows_equal(rows_as_dict([w.emit()]), reference([records[i] for i in (0, 2, 3, 5)]))


def test_an_undecodable_record_takes_its_project_from_its_key():
    batch = decode_poll(topic="t", partition=0, values=[b"{broken"], keys=[b"shop:k1"],
                        offsets=[7], produced_ms=[0])
    (letter,) = batch.dead_letters
    assert (letter.project_id, letter.kind, letter.offset) == ("shop", "undecodable", 7)


def emission(n: int, seed: int) -> Emission:
    w = ShardWindows(allowed_lateness_us=300_000_000, compression=200)
    w.add(make_batch(make_records(n, minutes=3, seed=seed), partition=0))
    return Emission(0, metrics=w.emit())


def test_halves_keep_every_row_once_and_in_order_with_their_own_digests():
    e = emission(3000, 5)  # some windows past the raw limit: real digests
    rows = e.metrics
    assert rows is not None and len(rows) > 10
    pieces = [[e]]
    leaves = []
    while pieces:  # cut down to single rows, as the writer's bisection does
        part = pieces.pop(0)
        if rows_of(part) == 1:
            leaves.extend(part)
            continue
        pieces[:0] = list(halves(part))
    assert len(leaves) == len(rows)

    def texts_of(batch):
        return digest_texts(batch.column("digest_means"), batch.column("digest_counts"),
                            digest_compression(batch)).to_pylist()

    texts = texts_of(rows)
    endpoints = rows.column("endpoint").to_pylist()
    for i, leaf in enumerate(leaves):
        assert leaf.metrics is not None and len(leaf.metrics) == 1
        assert leaf.metrics.column("endpoint")[0].as_py() == endpoints[i]
        assert texts_of(leaf.metrics) == [texts[i]]
    cut = slice_metrics(rows, 2, 5)
    assert texts_of(cut) == texts[2:5]
    assert sum(t.count("(") for t in texts) > len(texts)  # real digests, not single values


def test_halves_split_emissions_before_rows():
    a, b, c = emission(50, 1), emission(60, 2), emission(70, 3)
    left, right = halves([a, b, c])
    assert left == [a] and right == [b, c]


def test_an_error_inside_a_step_is_logged_with_its_context_before_the_worker_dies(
        caplog, monkeypatch):
    batch = make_batch(make_records(20, minutes=1), partition=4, first_offset=500)

    def broken_add(self, b):
        raise RuntimeError("a bug in the windows")

    monkeypatch.setattr(ShardWindows, "add", broken_add)
    settings = SpeedSettings(database={"url": "postgresql://nobody@127.0.0.1:1/none"})
    with caplog.at_level(logging.ERROR), pytest.raises(Exception, match="windows"):
        run_main(build_flow(settings, source=TestingSource([batch])))
    (record,) = [r for r in caplog.records if r.name == "speed_layer.flow"]
    assert record.getMessage() == ("speed layer step 'windows.on_item' failed (partition 4, "
                                   "0 open window(s), offsets 500..519); the worker stops")
    assert record.exc_info is not None and "RuntimeError" in repr(record.exc_info[1])
    assert np.asarray(batch.offsets).tolist()[0] == 500
