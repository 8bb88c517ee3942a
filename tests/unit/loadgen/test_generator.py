import re
from collections import Counter

import numpy as np
import pytest

from schemas.endpoints import normalise_endpoint
from tests.unit.loadgen.fixtures import gateway_records, small_spec
from turnstile_cli.loadgen import LATE_BEYOND, ON_TIME, TrafficSpec, encode_bodies, generate
from turnstile_cli.loadgen.profile import DEFAULT_ENDPOINTS

_GATEWAY_BATCH_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def test_same_seed_same_bytes_other_seed_other_events():
    a, b = generate(small_spec()), generate(small_spec())
    assert encode_bodies(a, 0, a.batches) == encode_bodies(b, 0, b.batches)
    assert a.batch_ids == b.batch_ids and np.array_equal(a.sends, b.sends)
    c = generate(small_spec(seed=8))
    assert encode_bodies(c, 0, 3) != encode_bodies(a, 0, 3)


def test_bodies_read_back_exactly_as_generated_by_the_gateway():
    traffic = generate(small_spec(events=3_000))
    records = [r for batch in gateway_records(traffic) for r in batch]
    rows = traffic.batch_rows
    assert [r.event_id for r in records] == traffic.event_id.take(rows).to_pylist()
    assert [r.timestamp_us for r in records] == (traffic.timestamp_ms[rows] * 1000).tolist()
    assert [r.latency_ms for r in records] == (traffic.latency_us[rows] / 1000).tolist()
    assert [r.status_code for r in records] == traffic.status[rows].tolist()
    templates = [DEFAULT_ENDPOINTS[e].template for e in traffic.endpoint[rows]]
    assert [r.endpoint for r in records] == templates  # derived by the gateway from the path
    assert all(r.batch_index == i for batch in gateway_records(traffic)
               for i, r in enumerate(batch))


def test_ids_fit_the_gateway_and_are_unique():
    traffic = generate(small_spec())
    ids = traffic.event_id.to_pylist()
    assert len(set(ids)) == len(ids) and max(map(len, ids)) <= 64
    assert all(_GATEWAY_BATCH_ID.match(b) for b in traffic.batch_ids)
    assert sorted(traffic.batch_rows.tolist()) == list(range(len(traffic)))


def test_traffic_looks_like_an_api():
    traffic = generate(small_spec(events=50_000, consumers=200, error_bursts=3))
    per_endpoint = np.bincount(traffic.endpoint, minlength=len(DEFAULT_ENDPOINTS))
    assert per_endpoint[0] > per_endpoint[1] > per_endpoint[3] > per_endpoint[-1]  # Zipf
    per_consumer = np.sort(np.bincount(traffic.consumer))[::-1]
    assert per_consumer[:20].sum() > 0.6 * len(traffic)  # a tenth of consumers, most traffic
    medians = {DEFAULT_ENDPOINTS[e].template: np.median(traffic.latency_us[traffic.endpoint == e])
               for e in range(len(DEFAULT_ENDPOINTS))}
    assert max(medians, key=medians.get) == "/v1/reports/{id}/export"
    assert medians["/v1/reports/{id}/export"] > 10 * medians["/v1/products/{id}"]
    paths = traffic.path.to_pylist()
    assert len(set(paths)) > 5_000  # ids in paths …
    assert {normalise_endpoint(p) for p in paths} <= {e.template for e in DEFAULT_ENDPOINTS}
    classes = Counter((traffic.status // 100).tolist())
    assert 0.9 < classes[2] / len(traffic) < 0.99 and classes[4] and classes[5]
    minute = traffic.timestamp_ms // 60_000 - traffic.timestamp_ms.min() // 60_000
    group = traffic.endpoint * (minute.max() + 1) + minute
    requests = np.bincount(group)
    fives = np.bincount(group, traffic.status >= 500, len(requests))
    rates = fives[requests >= 20] / requests[requests >= 20]
    assert np.median(rates) < 0.02 and rates.max() > 0.15  # an error burst
    assert len(set(traffic.country.to_pylist())) >= 10


def test_duplicates_are_resent_after_the_first_attempt_completed():
    traffic = generate(small_spec())
    sends = traffic.sends.tolist()
    assert traffic.duplicated_batches
    for b in traffic.duplicated_batches:
        first, second = (i for i, x in enumerate(sends) if x == b)
        assert second - first >= traffic.spec.in_flight
    assert sorted(set(sends)) == list(range(traffic.batches))


def test_late_events_are_older_than_their_neighbours():
    traffic = generate(small_spec(late_rate=0.1))
    spec = traffic.spec
    late = traffic.late != ON_TIME
    assert 0.05 < late.mean() <= 0.1
    assert (traffic.late == LATE_BEYOND).mean() > 0.02
    order = traffic.batch_rows
    ts = traffic.timestamp_ms[order]
    newest = np.maximum.accumulate(ts)
    behind = (newest - ts)[late[order]]
    assert (behind >= 30_000).mean() > 0.95
    beyond = (traffic.late == LATE_BEYOND)[order]
    assert ((newest - ts)[beyond] > spec.allowed_lateness_s * 1000 + 60_000).all()


def test_a_bad_spec_names_every_problem():
    with pytest.raises(ValueError, match="events must be >= 1.*late_rate must be within 0..1"):
        TrafficSpec(events=0, late_rate=2.0)
