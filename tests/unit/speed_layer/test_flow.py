"""The dataflow carries emissions to its ``postgres`` step, which hands them to the writer."""

import pytest
from bytewax.testing import TestingSource, run_main

from speed_layer import dataflow
from speed_layer.dataflow import build_flow
from speed_layer.settings import SpeedSettings
from tests.unit.speed_layer.fixtures import make_batch, make_records, reference

pytestmark = pytest.mark.unit


class FakeWriter:
    def __init__(self) -> None:
        self.emissions: list = []
        self.flushes = 0

    def submit(self, emission) -> None:
        self.emissions.append(emission)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass


def test_the_postgres_step_receives_every_emission(monkeypatch):
    fake = FakeWriter()
    callers: list[str] = []

    def get(self):
        import inspect
        callers.append(inspect.stack()[1].function)
        return fake

    monkeypatch.setattr(dataflow.SharedWriter, "get", get)
    records = make_records(600, minutes=2, seed=4)
    batches = [make_batch(records[:300], partition=1),
               make_batch(records[300:], partition=2, first_offset=300)]
    settings = SpeedSettings(database={"url": "postgresql://nobody@127.0.0.1:1/none"})
    run_main(build_flow(settings, source=TestingSource(batches)))
    assert callers and set(callers) == {"write_batch"}  # only the sink step writes
    rows = [e.metrics for e in fake.emissions if e.metrics is not None]
    assert {e.partition for e in fake.emissions} == {1, 2}
    counted = sum(sum(r.column("request_count").to_pylist()) for r in rows)
    assert counted == sum(v["request_count"] for v in reference(records).values()) == 600
