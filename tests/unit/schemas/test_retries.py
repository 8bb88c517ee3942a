"""The retry contract: the agent stops retrying before the speed layer forgets a batch id."""

import time

import msgspec
import pytest
from pydantic import ValidationError

from agent import AgentSettings, Sender
from schemas.retries import AGENT_MAX_RETRY_S, RETRY_DEDUPE_HORIZON_S
from speed_layer.items import WINDOW_US
from speed_layer.settings import SpeedSettings
from speed_layer.windows import ShardWindows
from tests.unit.agent.fake_gateway import start_fake_gateway
from tests.unit.speed_layer.fixtures import T0_US, make_batch, make_records


def flow_windows() -> ShardWindows:
    """A shard's windows exactly as ``speed_layer.dataflow`` builds them from the settings."""
    s = SpeedSettings()
    return ShardWindows(allowed_lateness_us=s.allowed_lateness_us,
                        compression=s.digest_compression,
                        dedupe_horizon_ms=s.dedupe_horizon_ms)


@pytest.mark.parametrize("retry_after_s", [590, AGENT_MAX_RETRY_S, RETRY_DEDUPE_HORIZON_S - 1])
def test_a_retry_as_late_as_the_agent_makes_counts_once(retry_after_s):
    """Other traffic keeps the partition moving (CreateTime and event time) meanwhile, and
    emissions run the forgetting in between; the retry is still recognised, so its events
    are neither counted again nor reported as late events."""
    w = flow_windows()
    batch = make_records(100, minutes=1, seed=1)
    assert w.add(make_batch(batch, batch_id="b1", produced_ms=0)) is None
    w.emit()
    for minute in range(1, int(retry_after_s // 60) + 1):
        filler = [msgspec.structs.replace(r, timestamp_us=T0_US + minute * WINDOW_US)
                  for r in make_records(5, minutes=1, seed=100 + minute)]
        w.add(make_batch(filler, batch_id=f"f{minute}", produced_ms=minute * 60_000,
                         first_offset=100 + 5 * minute))
        w.emit()
    retry = make_batch(batch, batch_id="b1", produced_ms=int(retry_after_s * 1000),
                       first_offset=10_000)
    assert w.add(retry) is None  # no late rows: recognised before the lateness rule
    assert w.duplicates == 100 and w.late == 0


def test_the_speed_layer_refuses_a_horizon_shorter_than_the_agents_retries():
    assert SpeedSettings().dedupe_horizon_s == RETRY_DEDUPE_HORIZON_S > AGENT_MAX_RETRY_S
    with pytest.raises(ValidationError, match="the agent retries a batch for up to 600 s"):
        SpeedSettings(dedupe_horizon_s=420)


def test_the_agent_never_retries_longer_than_the_contract():
    assert AgentSettings().max_retry_s == AGENT_MAX_RETRY_S
    with pytest.raises(ValidationError):
        AgentSettings(max_retry_s=AGENT_MAX_RETRY_S + 1)


def test_a_long_retry_after_does_not_push_the_last_attempt_past_the_deadline():
    gw = start_fake_gateway()
    gw.script.extend([(503, {"Retry-After": "300"})] * 5)
    sender = Sender(AgentSettings(url=gw.url, write_key="tsk_w_test", batch_size=1,
                                  max_retry_s=0.5, backoff_base_s=0.01))
    try:
        sender.record({"event_id": "e1", "timestamp": time.time(), "method": "GET",
                       "path": "/", "status_code": 200, "latency_ms": 1.0})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sender.stats().dropped == 0:
            time.sleep(0.02)
        assert len(gw.received) == 2  # the first try and one at the deadline, not 300 s on
        assert sender.stats().dropped_retries_exhausted == 1
    finally:
        sender.close(timeout=1)
        gw.server.shutdown()
        gw.server.server_close()
