"""A Bytewax partitioned source over confluent-kafka: one decoded batch per poll.

Bytewax's bundled ``KafkaSource`` makes one dataflow item per record; this one makes one
``ShardBatch`` per poll of a partition, so the per-item cost of Bytewax is paid once per
thousands of records. Its snapshot is the partition's next offset: on recovery Bytewax
hands it back and the partition resumes exactly after the last record of the last
completed epoch (the window state restored with it was built from exactly the records
before that offset).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from schemas.consumer_ops import ERRORS, EVENTS_IN, ComponentOps, no_ops
from schemas.retry import call_until_done, short_cause
from speed_layer.decode import COMPONENT, decode_poll
from speed_layer.flow_errors import logged
from speed_layer.items import ShardBatch
from speed_layer.settings import SpeedSettings

__all__ = ["COMPONENT", "EventsPartition", "EventsSource"]

log = logging.getLogger(__name__)

LAG_REFRESH_S: Final = 3.0
_KAFKA_LOG_EVERY_S: Final = 10.0


class KafkaErrors:
    """librdkafka's client errors as log lines, at most one per ``_KAFKA_LOG_EVERY_S``.

    The client reconnects by itself (backoff up to ``reconnect.backoff.max.ms``); its own
    stderr logging is off (``log_level`` 0), which would print every refused connection.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._last = 0.0

    def __call__(self, error: KafkaError) -> None:
        ERRORS.labels(COMPONENT, "kafka").inc()
        now = time.monotonic()
        if now - self._last >= _KAFKA_LOG_EVERY_S:
            self._last = now
            log.warning("Kafka unreachable at %s (%s); the consumer reconnects by itself "
                        "(backoff <= 10 s)", self.bootstrap, error.str())


def _consumer_config(settings: SpeedSettings) -> dict[str, object]:
    return {
        "log_level": 0,
        "error_cb": KafkaErrors(settings.kafka.bootstrap),
        "bootstrap.servers": settings.kafka.bootstrap,
        "group.id": settings.consumer_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": settings.stop_at_end,
        # A position retention has removed (or a recreated topic lacks): go on from the
        # oldest record left rather than skip to the end.
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
        # One consumer per partition: queue a few polls ahead, not librdkafka's default
        # 100,000 records per partition. (Peak RSS is dominated by the fetch buffers above:
        # 1 MB per partition saved ~0.7 GB at 2 M backlog events but cost ~35 % throughput.)
        "queued.min.messages": 4 * settings.poll_max_records,
        "queued.max.messages.kbytes": 64 * 1024,
        "fetch.wait.max.ms": 100,
    }


class _Keys:
    """The keys of a poll's messages, read only where asked (dead letters)."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages

    def __len__(self) -> int:
        return len(self.messages)

    def __getitem__(self, index: int) -> bytes | None:
        key = self.messages[index].key()
        return key if isinstance(key, bytes) or key is None else key.encode()


class EventsPartition(StatefulSourcePartition[ShardBatch, int]):
    """One Kafka partition of the events topic, read from a resume offset."""

    def __init__(self, settings: SpeedSettings, topic: str, partition: int,
                 resume_offset: int | None, ops: ComponentOps | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.ops = ops or no_ops(COMPONENT)
        self._events_in = EVENTS_IN.labels(COMPONENT)
        self._lag_due = 0.0
        self.max_records = settings.poll_max_records
        self.idle_wait = timedelta(milliseconds=settings.idle_wait_ms)
        self.stop_at_end = settings.stop_at_end
        self._consumer = Consumer(_consumer_config(settings))
        tp = TopicPartition(topic, partition)
        if resume_offset is None:
            if settings.start_offset == "earliest":
                # Offset 0, not the logical OFFSET_BEGINNING: that one costs a ListOffsets
                # round trip before the first fetch (~0.3 s here). When retention has
                # removed offset 0, auto.offset.reset moves the consumer to the earliest.
                resume_offset = 0
            else:
                _, resume_offset = call_until_done(
                    lambda: self._consumer.get_watermark_offsets(tp, timeout=10),
                    transient=(KafkaException,), log=log,
                    describe=lambda e: f"Kafka unreachable at {settings.kafka.bootstrap} "
                                       f"({short_cause(e)}) reading the end of {topic}")
        self.next_offset: int = resume_offset
        self._consumer.assign([TopicPartition(topic, partition, resume_offset)])
        self._awake: datetime | None = None
        self._at_end = False

    def next_batch(self) -> list[ShardBatch]:
        with logged("kafka.next_batch",
                    lambda: f"{self.topic} partition {self.partition}, "
                            f"next offset {self.next_offset}"):
            return self._next_batch()

    def _refresh_lag(self) -> None:
        """High watermark − position, from the watermarks fetches bring (no round trip)."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_REFRESH_S
        _, high = self._consumer.get_watermark_offsets(
            TopicPartition(self.topic, self.partition), cached=True)
        if high is not None and high >= 0:
            self.ops.set_lag(self.topic, self.partition, max(0, high - self.next_offset))

    def _next_batch(self) -> list[ShardBatch]:
        self._refresh_lag()
        messages = self._consumer.consume(self.max_records, 0.0)
        if any([m.error() is not None for m in messages]):
            messages = self._without_errors(messages)
        elif messages:
            self._at_end = False
        if not messages:
            if self._at_end and self.stop_at_end:
                raise StopIteration
            self._awake = datetime.now(UTC) + self.idle_wait
            return []
        self._awake = None
        # What confluent-kafka hands over one record at a time, read in comprehensions
        # (~0.2 µs a record, each record ~80 events); keys are read only for dead letters.
        offsets = [m.offset() or 0 for m in messages]
        batch = decode_poll(
            topic=self.topic, partition=self.partition,
            values=[m.value() or b"" for m in messages],
            keys=_Keys(messages), offsets=offsets,
            produced_ms=[m.timestamp()[1] for m in messages],
        )
        self._events_in.inc(len(batch) + len(batch.dead_letters))
        self.next_offset = offsets[-1] + 1
        return [batch]

    def _without_errors(self, messages: list[Message]) -> list[Message]:
        good = []
        for msg in messages:  # only when the poll carried an error or end-of-partition event
            err = msg.error()
            if err is None:
                self._at_end = False
                good.append(msg)
            elif err.code() == KafkaError._PARTITION_EOF:
                self._at_end = True
            elif err.fatal():
                raise KafkaException(err)
            else:  # the client retries these itself (a broker away, a leader moving)
                ERRORS.labels(COMPONENT, "kafka").inc()
                log.warning("kafka: %s on %s partition %d; going on", err.str(), self.topic,
                            self.partition)
        return good

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self.next_offset

    def close(self) -> None:
        self.ops.forget_lag(self.topic, self.partition)
        self._consumer.close()


class EventsSource(FixedPartitionedSource[ShardBatch, int]):
    """Every partition of the events topic; Bytewax spreads them over the workers."""

    def __init__(self, settings: SpeedSettings, ops: ComponentOps | None = None) -> None:
        self.settings = settings
        self.topic = settings.kafka.events_topic
        self.ops = ops or no_ops(COMPONENT)

    def list_parts(self) -> list[str]:
        """The topic's partitions; waits while Kafka is unreachable instead of failing."""
        with logged("kafka.list_parts", lambda: self.topic):
            return call_until_done(
                self._list_parts, transient=(KafkaException,), log=log,
                describe=lambda e: f"Kafka unreachable at {self.settings.kafka.bootstrap} "
                                   f"({short_cause(e)}) listing {self.topic}")

    def _list_parts(self) -> list[str]:
        consumer = Consumer(_consumer_config(self.settings))
        try:
            meta = consumer.list_topics(self.topic, timeout=10)
            topic = meta.topics[self.topic]
            if topic.error is not None:
                raise KafkaException(topic.error)
            return [str(p) for p in sorted(topic.partitions)]
        finally:
            consumer.close()

    def build_part(self, step_id: str, for_part: str,
                   resume_state: int | None) -> EventsPartition:
        with logged("kafka.build_part", lambda: f"{self.topic} partition {for_part}"):
            return EventsPartition(self.settings, self.topic, int(for_part), resume_state,
                                   self.ops)
