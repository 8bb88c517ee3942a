import asyncio
import threading

import pytest
from confluent_kafka import KafkaError

from ingest_gateway.producer import BatchAck, Unavailable, producer_config
from ingest_gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit


def test_producer_is_durable_and_compressed():
    cfg = producer_config(GatewaySettings(compression="lz4"))
    assert cfg["enable.idempotence"] is True
    assert cfg["acks"] == "all"
    assert cfg["compression.type"] == "lz4"


def _deliver(ack, errors):
    def run():
        for err in errors:
            ack(err, None)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_ack_resolves_only_when_every_record_is_acknowledged():
    async def main():
        ack = BatchAck(3, asyncio.get_running_loop())
        _deliver(ack, [None, None, None]).join()
        await ack.wait(1.0)
    asyncio.run(main())


def test_missing_acks_time_out_as_unavailable():
    async def main():
        ack = BatchAck(3, asyncio.get_running_loop())
        _deliver(ack, [None, None]).join()
        with pytest.raises(Unavailable) as exc:
            await ack.wait(0.1)
        assert exc.value.cause == "timeout"
    asyncio.run(main())


def test_one_failed_record_fails_the_batch_at_once():
    async def main():
        ack = BatchAck(1000, asyncio.get_running_loop())
        _deliver(ack, [None, KafkaError(KafkaError._MSG_TIMED_OUT)]).join()
        with pytest.raises(Unavailable) as exc:
            await ack.wait(5.0)
        assert exc.value.cause == "kafka_error"
    asyncio.run(main())
