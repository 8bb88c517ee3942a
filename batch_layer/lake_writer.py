"""The lake writer: a Kafka consumer group that archives every event to Parquet.

Per Kafka partition it buffers decoded batches and rolls them (by size or age) into files:
record the roll's intent (partition, first and last offset) → write every file atomically →
commit the partition's offset → drop the intent. A crash anywhere loses nothing (offsets
trail the files) and duplicates nothing: on restart a partition whose first record is the
first offset of a recorded intent replays exactly that range into the same file names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from batch_layer.lake import Lake, delete_file, read_json, write_json_atomic, write_parquet_atomic
from batch_layer.rolls import (
    ConsumedBatch,
    DecodedBatch,
    PartitionBuffer,
    decode_batch,
    roll_files,
    slice_offsets,
)
from batch_layer.settings import BatchSettings
from schemas.codec import header_batch_id

log = logging.getLogger(__name__)


@dataclass
class WriterStats:
    """Counters for logs, tests and the benchmark."""

    consumed: int = 0
    events: int = 0
    quarantined: int = 0
    rolls: int = 0
    files: int = 0
    replays: int = 0


def consumer_config(settings: BatchSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka.bootstrap,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024,
    }


class _HeaderBatchIds:
    """Batch id headers of consumed messages, read only where a body lacks the id."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages

    def __getitem__(self, index: int) -> str | None:
        return header_batch_id(self.messages[index].headers()) or None


def to_consumed_batch(messages: list[Message]) -> ConsumedBatch:
    """Pull the fields out of the message objects (the one per-record loop left)."""
    n = len(messages)
    return ConsumedBatch(
        partitions=np.fromiter((m.partition() for m in messages), np.int32, n),
        offsets=np.fromiter((m.offset() for m in messages), np.int64, n),
        keys=[m.key() for m in messages],
        values=[m.value() or b"" for m in messages],
        header_batch_ids=_HeaderBatchIds(messages),
        timestamps_ms=np.fromiter((m.timestamp()[1] for m in messages), np.int64, n),
    )


class LakeWriter:
    """Consumes the events topic and rolls it into the lake; ``run`` until ``stop``."""

    def __init__(self, settings: BatchSettings, lake: Lake,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._lake = lake
        self._clock = clock
        self._topic = settings.kafka.events_topic
        self._buffers: dict[int, PartitionBuffer] = {}
        self._checked: set[int] = set()  # partitions whose pending intent was looked at
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._failed = False
        self.stats = WriterStats()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> WriterStats:
        consumer = Consumer(consumer_config(self._settings))
        self._consumer = consumer
        consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._failed = False
        try:
            while not self._stop.is_set():
                messages = consumer.consume(self._settings.consume_batch,
                                            self._settings.consume_timeout_s)
                good = [m for m in messages if not self._is_error(m)]
                self.stats.consumed += len(good)
                if good:
                    self._ingest(decode_batch(to_consumed_batch(good)))
                self._roll_due()
            self._roll(self._rollable(self._buffers))
        except BaseException:
            # Leave the lake and offsets as they are: pending intents replay on restart.
            self._failed = True
            raise
        finally:
            consumer.close()
            self._consumer = None
        return self.stats

    @staticmethod
    def _is_error(message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() == KafkaError._PARTITION_EOF:
            return True
        if error.fatal() or not error.retriable():
            raise KafkaException(error)
        log.warning("kafka: %s", error)
        return True

    # --- assignment -------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._checked.difference_update(p.partition for p in partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = [p.partition for p in partitions]
        if not self._failed:
            self._roll(self._rollable(revoked))
        for p in revoked:
            self._buffers.pop(p, None)
            self._checked.discard(p)

    def _intent_path(self, partition: int) -> str:
        return self._lake.path("_lake_writer", "pending", quote(self._topic, safe=""),
                               f"{partition}.json")

    def _check_intent(self, partition: int, first_offset: int) -> int | None:
        """Last offset of an interrupted roll starting here, or None (stale intents go)."""
        self._checked.add(partition)
        intent = read_json(self._lake, self._intent_path(partition))
        if intent is None:
            return None
        if int(intent["first_offset"]) == first_offset:
            self.stats.replays += 1
            log.info("replaying interrupted roll of partition %d: %s", partition, intent)
            return int(intent["last_offset"])
        delete_file(self._lake, self._intent_path(partition))
        return None

    # --- buffering and rolling ----------------------------------------------------------

    def _buffer(self, partition: int) -> PartitionBuffer:
        buffer = self._buffers.get(partition)
        if buffer is None:
            buffer = PartitionBuffer(partition=partition, opened_at=self._clock())
            self._buffers[partition] = buffer
        return buffer

    def _ingest(self, decoded: DecodedBatch) -> None:
        ev_parts = decoded.events.column("kafka_partition").to_numpy()
        q_parts = decoded.quarantine.column("kafka_partition").to_numpy()
        for partition in np.unique(np.concatenate([ev_parts, q_parts])):
            p = int(partition)
            ev_idx = np.flatnonzero(ev_parts == p)
            q_idx = np.flatnonzero(q_parts == p)
            events = decoded.events.take(ev_idx)
            quarantine = decoded.quarantine.take(q_idx)
            q_days = decoded.quarantine_day[q_idx]
            self._add(p, events, quarantine, q_days)

    def _add(self, p: int, events: pa.Table, quarantine: pa.Table,
             q_days: npt.NDArray[np.int64]) -> None:
        ev_off = events.column("kafka_offset").to_numpy()
        q_off = quarantine.column("kafka_offset").to_numpy()
        offsets = np.concatenate([ev_off, q_off])
        first = int(offsets.min())
        if p not in self._checked:
            replay_last = self._check_intent(p, first)
            if replay_last is not None:
                self._buffer(p).replay_last_offset = replay_last
        buffer = self._buffer(p)
        upto = buffer.replay_last_offset
        if upto is None:
            buffer.add(events, quarantine, q_days, first, int(offsets.max()))
            return
        # Replaying: the roll must end exactly at ``upto``; the rest starts the next roll.
        head, rest = slice_offsets(events, ev_off, upto)
        cut = int(np.searchsorted(q_off, upto, side="right"))
        head_offsets = offsets[offsets <= upto]
        if head_offsets.size:
            buffer.add(head, quarantine.slice(0, cut), q_days[:cut], first,
                       int(head_offsets.max()))
        if buffer.replay_complete:
            self._roll([p])
            if rest.num_rows or cut < quarantine.num_rows:
                self._add(p, rest, quarantine.slice(cut), q_days[cut:])

    def _rollable(self, partitions: Iterable[int]) -> list[int]:
        """Buffered partitions that may roll now.

        An unfinished replay must not: it would overwrite the interrupted roll's files with
        fewer rows. Its intent stays for the next owner of the partition.
        """
        rollable = []
        for p in partitions:
            b = self._buffers.get(p)
            if b is not None and not b.empty and (b.replay_last_offset is None
                                                  or b.replay_complete):
                rollable.append(p)
        return rollable

    @staticmethod
    def _commit(consumer: Consumer, offsets: list[TopicPartition], attempts: int = 10) -> None:
        """Commit synchronously, retrying transient coordinator errors.

        A final failure is still safe: the intents stay and the rolls replay.
        """
        for attempt in range(1, attempts + 1):
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retriable = isinstance(error, KafkaError) and error.retriable()
                if not retriable or attempt == attempts:
                    raise
                log.warning("offset commit failed (%s), retrying", error)
                time.sleep(min(0.1 * 2**attempt, 2.0))

    def _roll_due(self) -> None:
        now = self._clock()
        settings = self._settings
        due = [p for p, b in self._buffers.items() if not b.empty and b.replay_last_offset is None
               and (b.nbytes >= settings.roll_bytes or now - b.opened_at >= settings.roll_seconds)]
        if due:
            self._roll(due)

    def _roll(self, partitions: list[int]) -> None:
        """Intent → files → offset commit → intent removal, for each given partition."""
        if not partitions:
            return
        commits: list[TopicPartition] = []
        for p in sorted(partitions):
            buffer = self._buffers[p]
            intent = {"topic": self._topic, "partition": p,
                      "first_offset": buffer.first_offset, "last_offset": buffer.last_offset}
            write_json_atomic(self._lake, self._intent_path(p), intent)
            files = roll_files(buffer)
            for f in files:
                write_parquet_atomic(self._lake, self._lake.path(f.relative_path), f.table,
                                     self._settings.parquet_compression_level)
            self.stats.rolls += 1
            self.stats.files += len(files)
            self.stats.events += sum(t.num_rows for t in buffer.tables)
            self.stats.quarantined += sum(t.num_rows for t in buffer.quarantine)
            commits.append(TopicPartition(self._topic, p, buffer.last_offset + 1))
        if self._consumer is not None:
            self._commit(self._consumer, commits)
        for p in sorted(partitions):
            delete_file(self._lake, self._intent_path(p))
            del self._buffers[p]

