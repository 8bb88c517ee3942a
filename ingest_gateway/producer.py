"""Publishing a batch to Kafka and waiting, bounded in time, until every record is acked.

This is where "202 means durable" is enforced. One idempotent ``acks=all`` producer per
worker process; a background thread polls it so delivery reports arrive while the event
loop keeps serving. Each HTTP batch gets a ``BatchAck`` that counts its delivery reports and
wakes the waiting request when the last one arrives, or at the first failure. A request
that is not fully acknowledged within ``delivery_timeout_s`` gets ``Unavailable`` (→ 503):
its records may still reach the broker later, which is why every event carries the batch id
and its position in the batch (format v2), so the agent's retry of the same batch is
recognisable downstream, event by event. Records are format v2 (``schemas.records``), each
produced to the partition its encoder chose, Kafka's default partitioner's for its keys.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingest_gateway.settings import GatewaySettings
from schemas.records import V2Record

_log = logging.getLogger(__name__)
# librdkafka's own log lines (reconnects, …) go through logging rather than raw stderr.
_librdkafka_log = logging.getLogger("ingest_gateway.librdkafka")


class Unavailable(Exception):
    """Kafka did not take the whole batch in time; the client should retry (→ 503)."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail


class BatchAck:
    """Delivery-report sink for one batch; called on the producer's poll thread."""

    __slots__ = ("remaining", "error", "_loop", "_future")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.remaining = count
        self.error: str | None = None
        self._loop = loop
        self._future: asyncio.Future[None] = loop.create_future()

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            if self.error is None:
                self.error = err.str()
                self._wake()
            return
        self.remaining -= 1
        if self.remaining == 0:
            self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the loop is closed: shutdown flush, nobody waits any more
            pass

    def _resolve(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._future)
        except TimeoutError:
            raise Unavailable(
                "timeout", f"Kafka did not acknowledge the batch within {timeout:g} s"
            ) from None
        if self.error is not None:
            raise Unavailable("kafka_error", f"Kafka refused the batch: {self.error}")


def producer_config(settings: GatewaySettings) -> dict[str, Any]:
    """The librdkafka settings: durable (idempotent, acks=all), compressed, bounded queue."""
    return {
        "bootstrap.servers": settings.kafka.bootstrap,
        "client.id": "turnstile-gateway",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.compression,
        "linger.ms": settings.linger_ms,
        "batch.size": 1_000_000,
        "message.timeout.ms": settings.message_timeout_ms,
        "queue.buffering.max.messages": settings.queue_max_messages,
        "queue.buffering.max.kbytes": settings.queue_max_kbytes,
        "socket.keepalive.enable": True,
        "reconnect.backoff.max.ms": 1000,
    }


class EventPublisher:
    """One worker's producer, its poll thread, and the batch publish-and-wait."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._topic = settings.kafka.events_topic
        self._timeout = settings.delivery_timeout_s
        self._max_queue = settings.queue_max_messages
        self._fatal: str | None = None
        self._producer = Producer(
            producer_config(settings), error_cb=self._on_error, logger=_librdkafka_log
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._poller.start()

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
            _log.critical("fatal Kafka producer error, refusing batches: %s", err.str())
        else:
            _log.warning("Kafka producer: %s", err.str())

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def publish(self, records: Sequence[V2Record]) -> None:
        """Return once every record is acknowledged; raise ``Unavailable`` otherwise."""
        if self._fatal is not None:
            raise Unavailable("kafka_error", f"Kafka producer failed: {self._fatal}")
        n = len(records)
        if len(self._producer) + n > self._max_queue:
            raise Unavailable("queue_full", "the gateway's Kafka queue is full")
        ack = BatchAck(n, asyncio.get_running_loop())
        produce = self._producer.produce
        topic = self._topic
        try:
            for r in records:
                # Positional: (topic, value, key, partition, callback), the order of the C
                # signature; keywords make the C call build a dict per record.
                produce(topic, r.value, r.key, r.partition, ack)
        except BufferError:
            raise Unavailable("queue_full", "the gateway's Kafka queue is full") from None
        except KafkaException as exc:
            raise Unavailable("kafka_error", f"Kafka refused the batch: {exc}") from None
        await ack.wait(self._timeout)

    def partition_count(self, timeout: float = 5.0) -> int | None:
        """The events topic's partition count, or None when the broker does not say (blocking)."""
        try:
            meta = self._producer.list_topics(self._topic, timeout=timeout)
        except KafkaException:
            return None
        topic = meta.topics.get(self._topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return None
        return len(topic.partitions)

    def reachable(self, partitions: int, timeout: float = 2.0) -> bool:
        """Whether the broker serves the events topic with ``partitions`` partitions (blocking).

        Another count means the gateway would put keys on other partitions than Kafka's
        default partitioner does for the real topic: not ready.
        """
        if self._fatal is not None:
            return False
        return self.partition_count(timeout) == partitions

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (bounded), then stop the poll thread."""
        self._stop.set()
        self._poller.join(timeout=1.0)
        remaining = self._producer.flush(timeout)
        if remaining:
            _log.warning("%d records undelivered at shutdown", remaining)
