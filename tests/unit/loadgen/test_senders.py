import gzip
from collections import Counter

import orjson
import pytest

from tests.unit.agent.fake_gateway import start_fake_gateway
from tests.unit.loadgen.fixtures import small_spec
from turnstile_cli.loadgen import DirectSender, LoadgenError, generate, send_via_agent


@pytest.fixture
def fake_gateway():
    gw = start_fake_gateway()
    yield gw
    gw.server.shutdown()
    gw.server.server_close()


KEYS = {"shop": "tsk_w_shop", "maps": "tsk_w_maps"}


def test_direct_sends_every_batch_gzipped_with_its_id_and_duplicates_twice(fake_gateway):
    traffic = generate(small_spec(events=4_000))
    fake_gateway.script.extend([(503, {"Retry-After": "0"})])  # the first request: retry
    report = DirectSender(fake_gateway.url, KEYS).send(traffic)
    received = fake_gateway.received
    assert len(received) == len(traffic.sends) + 1 and report.retries == 1
    ids = Counter(r.headers["X-Turnstile-Batch-Id"] for r in received)
    planned = Counter(traffic.batch_ids[b] for b in traffic.sends.tolist())
    assert sum((ids - planned).values()) == 1 and not planned - ids  # + the 503's retry
    twice = [b for b, n in planned.items() if n == 2]
    assert sorted(twice) == sorted(report.duplicate_batch_ids) != []
    for r in received:
        batch = traffic.batch_ids.index(r.headers["X-Turnstile-Batch-Id"])
        assert r.headers["X-Api-Key"] == KEYS[traffic.spec.projects[traffic.batch_project[batch]]]
        assert r.headers["Content-Encoding"] == "gzip"
    events = {e["event_id"] for r in received for e in r.events}
    assert events == set(traffic.event_id.to_pylist())
    assert report.events == len(traffic)


def test_rejected_events_or_a_refused_batch_fail_loudly(fake_gateway):
    traffic = generate(small_spec(events=400))
    fake_gateway.script.append((202, {}, {"accepted": 199, "rejected": [{"index": 3}]}))
    with pytest.raises(LoadgenError, match="accepted 199 of .*first rejection"):
        DirectSender(fake_gateway.url, KEYS).send(traffic)
    fake_gateway.script.append((401, {}))
    with pytest.raises(LoadgenError, match="HTTP 401"):
        DirectSender(fake_gateway.url, KEYS).send(traffic)
    with pytest.raises(LoadgenError, match="no write key for project"):
        DirectSender(fake_gateway.url, {"shop": "k"}).send(traffic)


def test_the_agent_path_delivers_everything_and_re_posts_armed_batches(fake_gateway):
    traffic = generate(small_spec(events=2_000))
    report = send_via_agent(traffic, fake_gateway.url, KEYS)
    received = fake_gateway.received
    events = [e["event_id"] for r in received for e in r.events]
    assert set(events) == set(traffic.event_id.to_pylist())
    assert len(events) == len(traffic) + sum(
        len(r.events) for r in received
        if r.headers["X-Turnstile-Batch-Id"] in report.duplicate_batch_ids) // 2
    assert len(report.duplicate_batch_ids) == len(traffic.duplicated_batches)
    assert report.events == len(traffic)
    first = received[0].events[0]
    assert set(first) >= {"event_id", "timestamp", "path", "status_code", "latency_ms"}


def test_rate_limit_paces_the_sending(fake_gateway):
    traffic = generate(small_spec(events=1_000))
    report = DirectSender(fake_gateway.url, KEYS).send(traffic, rate=2_000.0)
    assert report.seconds >= 0.35  # 1,000 events at 2,000/s, the first batch free


def test_gzip_bodies_are_deterministic():
    from turnstile_cli.loadgen import encode_bodies

    traffic = generate(small_spec(events=500))
    body = encode_bodies(traffic, 0, 1)[0]
    assert gzip.compress(body, mtime=0) == gzip.compress(body, mtime=0)
    assert len(orjson.loads(body)) == traffic.batch_offsets[1]
