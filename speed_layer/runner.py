"""Runs the dataflow in this process: recovery store, workers, epoch (snapshot) interval.

Also the process's operations side (``schemas.consumer_ops``): /healthz, /readyz (Kafka
and PostgreSQL reachable) and /metrics on ``ops_port``, and the ``speed_layer``
heartbeat row.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from schemas.consumer_ops import ComponentOps, kafka_probe, postgres_probe
from schemas.retry import call_until_done, short_cause
from speed_layer.dataflow import build_flow
from speed_layer.decode import COMPONENT
from speed_layer.settings import SpeedSettings

log = logging.getLogger(__name__)


def recovery_config(settings: SpeedSettings) -> RecoveryConfig | None:
    """The recovery store in the state folder, created with its partitions on first use."""
    if not settings.recovery:
        return None
    directory = settings.recovery_dir
    if not directory.exists() or not any(directory.iterdir()):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, settings.recovery_partitions)  # type: ignore[no-untyped-call]
        log.info("created recovery store %s", directory)
    return RecoveryConfig(directory)  # type: ignore[no-untyped-call]


def ensure_dead_letter_topic(settings: SpeedSettings) -> None:
    """Create the dead-letter topic when missing; waits while Kafka is unreachable."""
    call_until_done(
        lambda: _ensure_dead_letter_topic(settings), transient=(KafkaException,), log=log,
        describe=lambda e: f"Kafka unreachable at {settings.kafka.bootstrap} "
                           f"({short_cause(e)}) checking the dead-letter topic")


def _ensure_dead_letter_topic(settings: SpeedSettings) -> None:
    # Brokers here refuse auto-creation.
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap, "log_level": 0})
    topic = settings.kafka.dead_letter_topic
    if topic in admin.list_topics(timeout=30).topics:
        return
    futures = admin.create_topics(
        [NewTopic(topic, 1, settings.kafka.replication_factor)], operation_timeout=30
    )
    for future in futures.values():
        try:
            future.result(timeout=30)
        except Exception as exc:  # another process created it meanwhile
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def run(
    settings: SpeedSettings,
    *,
    workers: int | None = None,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    """Block running the flow until it ends (only with ``stop_at_end``) or is killed."""
    ops = start_ops(settings, process_id or 0)
    try:
        ensure_dead_letter_topic(settings)
        log.info("dataflow starting at %.6f (process %s, %d worker(s))", time.time(),
                 process_id or 0, workers or settings.workers)
        cli_main(  # type: ignore[no-untyped-call]
            build_flow(settings, ops=ops),
            workers_per_process=workers or settings.workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=settings.snapshot_interval_s),
            recovery_config=recovery_config(settings),
        )
    finally:
        ops.stop()


def start_ops(settings: SpeedSettings, process_id: int = 0) -> ComponentOps:
    """The ops server and heartbeat of this process (readiness: Kafka and PostgreSQL).

    Process ``i`` of a cluster serves on ``ops_port + i``, so processes on one host differ.
    """
    dsn = settings.database.dsn()
    port = settings.ops_port + process_id if settings.ops_port else 0
    return ComponentOps(COMPONENT, port, dsn, probes={
        "kafka": kafka_probe(settings.kafka.bootstrap), "postgres": postgres_probe(dsn),
    }).start()
