import pytest

from agent.sender import Sender
from agent.settings import AgentSettings
from tests.unit.agent.fake_gateway import start_fake_gateway

TEST_HASH_KEY = "test-consumer-hash-key"


@pytest.fixture
def fake_gateway():
    gw = start_fake_gateway()
    yield gw
    gw.server.shutdown()
    gw.server.server_close()


@pytest.fixture
def make_sender(fake_gateway):
    senders = []

    def make(**overrides):
        settings = AgentSettings(url=fake_gateway.url, write_key="tsk_w_test",
                                 consumer_hash_key=TEST_HASH_KEY,
                                 **{"flush_interval_s": 0.05, "backoff_base_s": 0.01,
                                    "backoff_max_s": 0.05, **overrides})
        sender = Sender(settings)
        senders.append(sender)
        return sender

    yield make
    for s in senders:
        s.close(timeout=1)
