"""Creates the events and dead-letter topics with explicit partition counts.

Brokers run with ``auto.create.topics.enable=false``: the events topic's partition count
decides which partition a ``project:api_key`` key lands on, so it is set here once, on
purpose, and a topic found with another count is reported rather than silently used.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from schemas.settings import KafkaSettings
from turnstile_cli.stack.process import StackError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

DEAD_LETTER_PARTITIONS = 1


def partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int | None:
    """The number of partitions of ``topic``, or None when it does not exist."""
    metadata = _admin(bootstrap).list_topics(topic=topic, timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return None
    return len(found.partitions)


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    *,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> int:
    """Create ``topic`` unless it exists; waits until every partition has a leader.

    Idempotent and safe against a concurrent creator. Raises when the topic exists with a
    different partition count. Returns the partition count.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.cimpl import NewTopic

    existing = partition_count(bootstrap, topic, timeout)
    if existing is None:
        new = NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                       config=dict(config or {}))
        admin = _admin(bootstrap)  # must outlive the future, or the request is cancelled
        future = admin.create_topics([new], operation_timeout=timeout)[topic]
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"cannot create topic {topic}: {exc}") from exc
        _wait_for_leaders(bootstrap, topic, timeout)
        existing = partition_count(bootstrap, topic, timeout)
    if existing != partitions:
        raise StackError(
            f"topic {topic} has {existing} partitions, expected {partitions}; "
            "partition counts are never changed automatically (keys would move)"
        )
    return existing


def ensure_topics(settings: KafkaSettings, bootstrap: str | None = None,
                  timeout: float = 30.0) -> dict[str, int]:
    """Create the events topic and the dead-letter topic; returns name → partitions."""
    where = bootstrap or settings.bootstrap
    layout = {
        settings.events_topic: settings.events_partitions,
        settings.dead_letter_topic: DEAD_LETTER_PARTITIONS,
    }
    return {
        topic: ensure_topic(where, topic, partitions,
                            replication_factor=settings.replication_factor, timeout=timeout)
        for topic, partitions in layout.items()
    }


def _wait_for_leaders(bootstrap: str, topic: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _admin(bootstrap).list_topics(topic=topic, timeout=timeout).topics.get(topic)
        if (found is not None and found.error is None and found.partitions
                and all(p.leader >= 0 for p in found.partitions.values())):
            return
        time.sleep(0.1)
    raise StackError(f"topic {topic} has no leader for every partition after {timeout:.0f} s")


def _admin(bootstrap: str) -> AdminClient:
    from confluent_kafka.admin import AdminClient

    from turnstile_cli.stack.kafka import quiet_client_config

    return AdminClient(quiet_client_config(bootstrap))
