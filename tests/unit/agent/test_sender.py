import time

import pytest

from agent.sender import Sender
from agent.settings import AgentSettings

pytestmark = pytest.mark.unit


def ev(sender, i=0):
    return {"event_id": sender.new_event_id(), "timestamp": time.time(), "method": "GET",
            "path": f"/x/{i}", "status_code": 200, "latency_ms": 1.0}


def test_events_are_batched_gzipped_and_authenticated(make_sender, fake_gateway):
    sender = make_sender(batch_size=100, flush_interval_s=5)
    for i in range(250):
        assert sender.record(ev(sender, i))
    assert sender.flush(5)
    sizes = [len(r.events) for r in fake_gateway.received]
    assert sizes[:2] == [100, 100] and sum(sizes) == 250
    first = fake_gateway.received[0].headers
    assert first["Content-Encoding"] == "gzip"
    assert first["X-Api-Key"] == "tsk_w_test"
    assert len({r.headers["X-Turnstile-Batch-Id"] for r in fake_gateway.received}) == len(sizes)
    stats = sender.stats()
    assert (stats.sent_events, stats.sent_batches, stats.dropped) == (250, len(sizes), 0)


def test_flush_interval_sends_a_partial_batch(make_sender, fake_gateway):
    sender = make_sender(batch_size=1000, flush_interval_s=0.05)
    sender.record(ev(sender))
    deadline = time.monotonic() + 3
    while not fake_gateway.received:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(fake_gateway.events()) == 1


def test_retries_keep_the_batch_id_and_event_ids(make_sender, fake_gateway):
    fake_gateway.script.extend([(503, {"Retry-After": "0"}), (500, {}), (429, {})])
    sender = make_sender(batch_size=10)
    events = [ev(sender, i) for i in range(10)]
    for e in events:
        sender.record(e)
    assert sender.flush(5)
    assert len(fake_gateway.received) == 4
    assert len({r.headers["X-Turnstile-Batch-Id"] for r in fake_gateway.received}) == 1
    for r in fake_gateway.received:
        assert [e["event_id"] for e in r.events] == [e["event_id"] for e in events]
    stats = sender.stats()
    assert (stats.retries, stats.sent_events, stats.dropped) == (3, 10, 0)


def test_retry_after_delays_the_retry(make_sender, fake_gateway):
    fake_gateway.script.append((503, {"Retry-After": "1"}))
    sender = make_sender(batch_size=1)
    start = time.monotonic()
    sender.record(ev(sender))
    assert sender.flush(5)
    assert time.monotonic() - start >= 0.95


def test_refused_batches_are_dropped_and_counted(make_sender, fake_gateway):
    fake_gateway.script.append((401, {}))
    sender = make_sender(batch_size=5)
    for i in range(5):
        sender.record(ev(sender, i))
    assert sender.flush(5)
    stats = sender.stats()
    assert (stats.dropped_refused, stats.sent_events, stats.retries) == (5, 0, 0)
    assert "401" in (stats.last_error or "")


def test_full_queue_drops_and_counts_without_blocking():
    # Nothing listens on this port: every send fails, the queue fills up.
    settings = AgentSettings(url="http://127.0.0.1:9", max_queue_events=50, batch_size=10,
                             flush_interval_s=0.01, backoff_base_s=5, request_timeout_s=0.5)
    sender = Sender(settings)
    try:
        start = time.perf_counter()
        results = [sender.record({"i": i}) for i in range(500)]
        assert time.perf_counter() - start < 0.5
        assert results.count(False) >= 440
        assert sender.stats().dropped_queue_full == results.count(False)
    finally:
        sender.close(timeout=0.2)
    assert sender.stats().dropped_shutdown > 0


def test_close_flushes_what_is_left(make_sender, fake_gateway):
    sender = make_sender(batch_size=1000, flush_interval_s=30)
    for i in range(30):
        sender.record(ev(sender, i))
    sender.close(timeout=5)
    assert len(fake_gateway.events()) == 30
    assert sender.stats().queued == 0


def test_batch_is_dropped_after_max_retry_time(make_sender, fake_gateway):
    fake_gateway.script.extend([(503, {})] * 50)
    sender = make_sender(batch_size=1, max_retry_s=0.2)
    sender.record(ev(sender))
    assert sender.flush(5)
    assert sender.stats().dropped_retries_exhausted == 1


def test_event_ids_are_unique_and_short(make_sender):
    sender = make_sender()
    ids = {sender.new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert max(map(len, ids)) <= 64


def test_invalid_events_reported_by_the_gateway_are_counted(make_sender, fake_gateway):
    fake_gateway.script.append(
        (202, {}, {"accepted": 1, "rejected": [{"index": 1, "errors": ["path: required"]}]}))
    sender = make_sender(batch_size=2)
    sender.record(ev(sender))
    sender.record(ev(sender))
    assert sender.flush(5)
    stats = sender.stats()
    assert (stats.invalid_events, stats.sent_events, stats.retries) == (1, 1, 0)


def test_an_unencodable_recorded_event_is_dropped_and_counted_not_fatal(make_sender,
                                                                       fake_gateway):
    sender = make_sender(batch_size=10, flush_interval_s=0.05)
    sender.record(ev(sender, 0))
    sender.record({**ev(sender, 1), "path": "/a\ud800"})  # orjson refuses lone surrogates
    sender.record({**ev(sender, 2), "when": object()})
    assert sender.flush(5)
    sender.record(ev(sender, 3))
    assert sender.flush(5)
    assert [e["path"] for e in fake_gateway.events()] == ["/x/0", "/x/3"]
    stats = sender.stats()
    assert (stats.dropped_unencodable, stats.sent_events) == (2, 2)
    assert "not encodable" in (stats.last_error or "")
