"""The lateness plan against the real speed-layer windows, under any allowed interleaving.

Consumers are spread over partitions at random (the test does not know Kafka's mapping,
and neither does the plan), requests complete in a random order that the senders' window
allows (a request starts only once the one ``in_flight`` places earlier completed), and
each partition's records go through ``ShardWindows`` in random polls. Whatever happens,
the windows must call late exactly the events the ground truth says.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest

from schemas.codec import record_key
from speed_layer.decode import decode_poll
from speed_layer.windows import ShardWindows
from tests.records import one_per_event
from tests.unit.loadgen.fixtures import gateway_records, small_spec
from turnstile_cli.loadgen import generate, ground_truth


def completion_order(sends: list[int], in_flight: int, rng: np.random.Generator) -> list[int]:
    """Slots in the order their requests complete, any order the sending window allows."""
    done: list[int] = []
    finished: set[int] = set()
    open_slots: list[int] = []
    nxt = 0
    while len(done) < len(sends):
        can_start = nxt < len(sends) and (nxt < in_flight or nxt - in_flight in finished)
        if can_start and (not open_slots or rng.random() < 0.5):
            open_slots.append(nxt)
            nxt += 1
            continue
        slot = open_slots.pop(int(rng.integers(len(open_slots))))
        finished.add(slot)
        done.append(slot)
    return done


def run_windows(traffic, seed: int, in_flight: int, partitions: int = 3):
    """Late events and final per-series counts the windows produced, as the truth keys them."""
    spec = traffic.spec
    rng = np.random.default_rng(seed)
    part_of = rng.integers(0, partitions, spec.consumers)
    consumer_of = {f"cust-{i:05d}": i for i in range(spec.consumers)}
    batches = gateway_records(traffic)
    logs: list[list] = [[] for _ in range(partitions)]
    sends = traffic.sends.tolist()
    for tick, slot in enumerate(completion_order(sends, in_flight, rng)):
        batch = sends[slot]
        for r in batches[batch]:
            logs[part_of[consumer_of[r.api_key]]].append((r, tick))
    late, rows = Counter(), {}
    for p, log in enumerate(logs):
        windows = ShardWindows(allowed_lateness_us=int(spec.allowed_lateness_s * 1e6),
                               compression=100)
        at = 0
        while at < len(log):
            poll = log[at:at + int(rng.integers(50, 900))]
            records = [r for r, _ in poll]
            batch = decode_poll(
                topic="t", partition=p,
                values=one_per_event(
                    records, batch_id=[r.batch_id for r in records],
                    first_index=[r.batch_index if r.batch_id else at + j
                                 for j, r in enumerate(records)]),
                keys=[record_key(r.project_id, r.api_key) for r in records],
                offsets=range(at, at + len(poll)),
                produced_ms=[1_000_000 + tick for _, tick in poll])
            found = windows.add(batch)
            if found is not None:
                for project, key, bucket in zip(found.project_id, found.api_key,
                                                found.bucket_us.tolist(), strict=True):
                    minute = datetime.fromtimestamp(bucket / 1e6, UTC)
                    late[(project, key, minute.strftime("%Y-%m-%dT%H:%M:00Z"))] += 1
            emitted = windows.emit()
            if emitted is not None:
                for r in emitted.to_pylist():
                    rows[(r["bucket_us"], r["project_id"], r["api_key"], r["endpoint"],
                          r["status_class"], r["method"])] = r["request_count"]
            at += len(poll)
    stream = Counter()
    for (bucket, project, key, endpoint, status_class, _), n in rows.items():
        day = datetime.fromtimestamp(bucket / 1e6, UTC).date().isoformat()
        stream[(project, key, day, endpoint, status_class)] += n
    return dict(late), dict(stream)


@pytest.mark.parametrize(("in_flight", "seed"), [(3, 1), (3, 2), (1, 3), (6, 4)])
def test_windows_call_late_exactly_what_the_truth_says(in_flight, seed):
    traffic = generate(small_spec(in_flight=in_flight, seed=seed, late_rate=0.06))
    truth = ground_truth(traffic)
    late, stream = run_windows(traffic, seed, in_flight)
    assert sum(truth.late_beyond.values()) > 300
    assert late == truth.late_beyond
    assert stream == truth.stream_counts()


def test_a_sender_ignoring_the_window_would_break_the_prediction():
    """The window is what makes the plan exact: with every request in flight at once, an
    event can land behind much newer ones (this is why the senders wait)."""
    traffic = generate(small_spec(in_flight=1, seed=5, late_rate=0.06))
    late, _ = run_windows(traffic, 5, in_flight=len(traffic.sends))
    assert late != ground_truth(traffic).late_beyond
