"""The lake writer: a Kafka consumer group that archives every event to Parquet.

Per Kafka partition it buffers decoded batches and rolls them (by size or age) into files:
record the roll's intent (partition, first and last offset) → write every file atomically →
commit the partition's offset → drop the intent. A crash anywhere loses nothing (offsets
trail the files) and duplicates nothing: on restart a partition whose first record is the
first offset of a recorded intent replays exactly that range into the same file names.

Refused records (undecodable, or holding what PostgreSQL or Parquet cannot store) are
kept in the roll's ``_quarantine/`` file and sent to the dead letters (topic + table)
before the roll's offsets are committed, so none is skipped silently. A lost broker or
coordinator is waited out (the client reconnects; commits are retried with capped
backoff, one log line per attempt), never a crash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from batch_layer.lake import Lake, delete_file, read_json, write_json_atomic, write_parquet_atomic
from batch_layer.rolls import (
    ConsumedBatch,
    DecodedBatch,
    PartitionBuffer,
    RollFile,
    decode_batch,
    partition_runs,
    roll_files,
    slice_offsets,
)
from batch_layer.settings import BatchSettings
from schemas.consumer_ops import ERRORS, EVENTS_IN, EVENTS_OUT, ComponentOps, no_ops
from schemas.dead_letter_publisher import DeadLetterPublisher
from schemas.dead_letters import DeadLetter
from schemas.lake import intent_path
from schemas.retry import call_until_done, short_cause

log = logging.getLogger(__name__)

COMPONENT = "lake_writer"
_UNSTORABLE = "U+0000"
# Commit errors that only say the coordinator cannot be reached now: wait, then commit.
_UNREACHABLE = frozenset({
    KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError._WAIT_COORD, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
})
LAG_REFRESH_S = 3.0
_KAFKA_LOG_EVERY_S = 10.0


@dataclass
class WriterStats:
    """Counters for logs, tests and the benchmark."""

    consumed: int = 0  # events (a v2 record holds many)
    events: int = 0
    quarantined: int = 0
    rolls: int = 0
    files: int = 0
    replays: int = 0


def consumer_config(settings: BatchSettings) -> dict[str, Any]:
    return {
        "log_level": 0,  # librdkafka would print every refused connection; see _is_error
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


def to_consumed_batch(messages: list[Message]) -> ConsumedBatch:
    """Pull the fields out of the message objects (the one per-record loop left)."""
    n = len(messages)
    return ConsumedBatch(
        partitions=np.fromiter((m.partition() for m in messages), np.int32, n),
        offsets=np.fromiter((m.offset() for m in messages), np.int64, n),
        keys=[m.key() for m in messages],
        values=[m.value() or b"" for m in messages],
        timestamps_ms=np.fromiter((m.timestamp()[1] for m in messages), np.int64, n),
    )


class LakeWriter:
    """Consumes the events topic and rolls it into the lake; ``run`` until ``stop``."""

    def __init__(self, settings: BatchSettings, lake: Lake,
                 clock: Callable[[], float] = time.monotonic, *,
                 ops: ComponentOps | None = None,
                 dead_letters: DeadLetterPublisher | None = None) -> None:
        self._settings = settings
        self._ops = ops or no_ops(COMPONENT)
        self._dead_letters = dead_letters or DeadLetterPublisher(
            bootstrap=settings.kafka.bootstrap, topic=settings.kafka.dead_letter_topic,
            dsn=settings.database.dsn(), ops=self._ops)
        self._lake = lake
        self._clock = clock
        self._topic = settings.kafka.events_topic
        self._buffers: dict[int, PartitionBuffer] = {}
        self._checked: set[int] = set()  # partitions whose pending intent was looked at
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._failed = False
        self._lag_due = 0.0
        self._kafka_logged = 0.0
        self._dead_letters.stop = self._stop
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
                if good:
                    decoded = decode_batch(to_consumed_batch(good))
                    events = decoded.events.num_rows + decoded.quarantine.num_rows
                    self.stats.consumed += events
                    EVENTS_IN.labels(COMPONENT).inc(events)
                    self._ingest(decoded)
                self._roll_due()
                self._refresh_lag(consumer)
            self._roll(self._rollable(self._buffers))
        except BaseException:
            # Leave the lake and offsets as they are: pending intents replay on restart.
            self._failed = True
            raise
        finally:
            consumer.close()
            self._consumer = None
            self._dead_letters.close()
        return self.stats

    def _is_error(self, message: Message) -> bool:
        """True for an error event (skipped); raises only on a fatal client error."""
        error = message.error()
        if error is None:
            return False
        if error.code() == KafkaError._PARTITION_EOF:
            return True
        if error.fatal():
            raise KafkaException(error)
        # Brokers away, a leader moving, a topic being created: the client retries.
        ERRORS.labels(COMPONENT, "kafka").inc()
        now = self._clock()
        if now - self._kafka_logged >= _KAFKA_LOG_EVERY_S:
            self._kafka_logged = now
            log.warning("Kafka error at %s (%s); the consumer retries by itself",
                        self._settings.kafka.bootstrap, error.str())
        return True

    def _refresh_lag(self, consumer: Consumer) -> None:
        """Per assigned partition: high watermark (as of the last fetch) − position."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_REFRESH_S
        try:
            positions = consumer.position(consumer.assignment())
        except KafkaException:
            return
        for tp in positions:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high is not None and high >= 0 and tp.offset >= 0:
                self._ops.set_lag(tp.topic, tp.partition, max(0, high - tp.offset))

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
            self._ops.forget_lag(self._topic, p)

    def _intent_path(self, partition: int) -> str:
        return self._lake.path(intent_path(self._topic, partition))

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
        """Hand each partition its rows: zero-copy slices of the poll's table."""
        ev_runs = partition_runs(decoded.events.column("kafka_partition").to_numpy())
        q_parts = decoded.quarantine.column("kafka_partition").to_numpy()
        for p in sorted(set(ev_runs) | set(q_parts.tolist())):
            runs = ev_runs.get(p, [])
            events = (pa.concat_tables([decoded.events.slice(s, n) for s, n in runs]) if runs
                      else decoded.events.slice(0, 0))
            q_idx = np.flatnonzero(q_parts == p)
            quarantine = decoded.quarantine.take(q_idx)  # one step per refused record (rare)
            self._add(int(p), events, quarantine, decoded.quarantine_day[q_idx])

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

    def _commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None:
        """Commit synchronously, waiting out transient coordinator errors (capped backoff).

        A non-retriable failure (the partitions were given to another member) is raised;
        it is still safe: the intents stay and the rolls replay.
        """
        def commit() -> None:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and (error.retriable()
                                                      or error.code() in _UNREACHABLE):
                    raise _RetriableCommit(error.str()) from exc
                raise

        call_until_done(
            commit, transient=(_RetriableCommit,), log=log, stop=self._stop,
            describe=lambda e: f"Kafka at {self._settings.kafka.bootstrap} did not take the "
                               f"offset commit ({short_cause(e)})",
            on_failure=lambda e: ERRORS.labels(COMPONENT, "commit").inc())

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
        letters: list[DeadLetter] = []
        files: list[RollFile] = []
        for p in sorted(partitions):
            buffer = self._buffers[p]
            intent = {"topic": self._topic, "partition": p,
                      "first_offset": buffer.first_offset, "last_offset": buffer.last_offset}
            write_json_atomic(self._lake, self._intent_path(p), intent)
            mine = roll_files(buffer)
            files.extend(mine)
            self.stats.rolls += 1
            self.stats.files += len(mine)
            self.stats.events += buffer.rows
            self.stats.quarantined += sum(t.num_rows for t in buffer.quarantine)
            letters.extend(self._letters(buffer.quarantine))
            commits.append(TopicPartition(self._topic, p, buffer.last_offset + 1))
        self._write_files(files)  # every partition's intent is durable before its files
        # Durable before the offsets move past them (a replay may send them again; the
        # table keeps one row each).
        self._dead_letters.publish(letters)
        if self._consumer is not None:
            self._commit(self._consumer, commits)
        self._ops.success()
        for p in sorted(partitions):
            EVENTS_OUT.labels(COMPONENT).inc(self._buffers[p].rows)
            delete_file(self._lake, self._intent_path(p))
            del self._buffers[p]

    def _write_files(self, files: list[RollFile]) -> None:
        """A roll's files, ``write_threads`` at a time.

        Parquet encoding and zstd run without the GIL, so a second core shortens a roll
        that writes many files.
        """
        level = self._settings.parquet_compression_level

        def write(f: RollFile) -> None:
            write_parquet_atomic(self._lake, self._lake.path(f.relative_path), f.table, level)

        if self._settings.write_threads <= 1 or len(files) <= 1:
            for f in files:
                write(f)
            return
        with ThreadPoolExecutor(self._settings.write_threads) as pool:
            for _ in pool.map(write, files):  # re-raises the first failure
                pass

    def _letters(self, quarantine: list[pa.Table]) -> list[DeadLetter]:
        letters = []
        for table in quarantine:  # one step per refused record (rare)
            for row in table.to_pylist():
                letters.append(DeadLetter(
                    component=COMPONENT, reason=row["reason"],
                    kind="unstorable" if _UNSTORABLE in row["reason"] or row["reason"]
                    .startswith("Parquet") else "undecodable",
                    project_id=row["project_id"], topic=self._topic,
                    partition=row["kafka_partition"], offset=row["kafka_offset"],
                    event_id=row["event_id"], key=row["key"], value=row["value"]))
        return letters


class _RetriableCommit(Exception):
    """A commit the coordinator refused for now (moving, loading, unreachable)."""

