"""A Bytewax partitioned source over confluent-kafka: one decoded batch per poll.

Bytewax's bundled ``KafkaSource`` makes one dataflow item per record; this one makes one
``ShardBatch`` per poll of a partition, so the per-item cost of Bytewax is paid once per
thousands of records. Its snapshot is the partition's next offset: on recovery Bytewax
hands it back and the partition resumes exactly after the last record of the last
completed epoch (the window state restored with it was built from exactly the records
before that offset).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas.topics import BATCH_ID_HEADER
from speed_layer.decode import decode_poll
from speed_layer.items import ShardBatch
from speed_layer.settings import SpeedSettings

_BATCH_ID_HEADER = BATCH_ID_HEADER


def _consumer_config(settings: SpeedSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka.bootstrap,
        "group.id": settings.consumer_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": settings.stop_at_end,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024,
        "fetch.wait.max.ms": 100,
    }


def _batch_id(
    headers: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None,
) -> str:
    if not headers:
        return ""
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == _BATCH_ID_HEADER and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return ""


class EventsPartition(StatefulSourcePartition[ShardBatch, int]):
    """One Kafka partition of the events topic, read from a resume offset."""

    def __init__(self, settings: SpeedSettings, topic: str, partition: int,
                 resume_offset: int | None) -> None:
        self.topic = topic
        self.partition = partition
        self.max_records = settings.poll_max_records
        self.idle_wait = timedelta(milliseconds=settings.idle_wait_ms)
        self.stop_at_end = settings.stop_at_end
        self._consumer = Consumer(_consumer_config(settings))
        tp = TopicPartition(topic, partition)
        if resume_offset is None:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=30)
            resume_offset = low if settings.start_offset == "earliest" else high
        self.next_offset: int = resume_offset
        self._consumer.assign([TopicPartition(topic, partition, resume_offset)])
        self._awake: datetime | None = None
        self._at_end = False

    def next_batch(self) -> list[ShardBatch]:
        messages = self._consumer.consume(self.max_records, 0.0)
        values: list[bytes] = []
        keys: list[bytes | None] = []
        offsets: list[int] = []
        batch_ids: list[str] = []
        produced: list[int] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end = True
                    continue
                raise KafkaException(err)
            self._at_end = False
            # The only per-record Python work: what confluent-kafka hands over one by one.
            values.append(msg.value() or b"")
            keys.append(msg.key())
            offsets.append(msg.offset() or 0)
            headers = msg.headers()
            if headers and isinstance(headers, list) and headers[0][0] == _BATCH_ID_HEADER:
                first = headers[0][1]  # the gateway puts the batch id first: no scan
                batch_ids.append(first.decode() if isinstance(first, bytes) else first or "")
            else:
                batch_ids.append(_batch_id(headers))
            produced.append(msg.timestamp()[1])
        if not values:
            if self._at_end and self.stop_at_end:
                raise StopIteration
            self._awake = datetime.now(UTC) + self.idle_wait
            return []
        self._awake = None
        self.next_offset = offsets[-1] + 1
        return [
            decode_poll(topic=self.topic, partition=self.partition, values=values, keys=keys,
                        offsets=offsets, batch_ids=batch_ids, produced_ms=produced)
        ]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self.next_offset

    def close(self) -> None:
        self._consumer.close()


class EventsSource(FixedPartitionedSource[ShardBatch, int]):
    """Every partition of the events topic; Bytewax spreads them over the workers."""

    def __init__(self, settings: SpeedSettings) -> None:
        self.settings = settings
        self.topic = settings.kafka.events_topic

    def list_parts(self) -> list[str]:
        consumer = Consumer(_consumer_config(self.settings))
        try:
            meta = consumer.list_topics(self.topic, timeout=30)
            topic = meta.topics[self.topic]
            if topic.error is not None:
                raise KafkaException(topic.error)
            return [str(p) for p in sorted(topic.partitions)]
        finally:
            consumer.close()

    def build_part(self, step_id: str, for_part: str,
                   resume_state: int | None) -> EventsPartition:
        return EventsPartition(self.settings, self.topic, int(for_part), resume_state)
