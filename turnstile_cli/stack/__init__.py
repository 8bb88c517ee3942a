"""The local stack: Kafka and PostgreSQL from the project's own files, services supervised.

Production points the services at real clusters; this package exists so that
``turnstile stack up`` and the integration tests get the same servers on 127.0.0.1 with
nothing but Maven Central jars and Debian packages; ``supervisor`` keeps the platform's
services running on top of them.
"""

from turnstile_cli.stack.kafka import KafkaBroker, ensure_jars
from turnstile_cli.stack.postgres import PostgresServer
from turnstile_cli.stack.process import StackError, free_ports
from turnstile_cli.stack.servers import ComponentStatus, LocalStack, StackConfig
from turnstile_cli.stack.topics import ensure_topic, ensure_topics, partition_count

__all__ = [
    "ComponentStatus",
    "KafkaBroker",
    "LocalStack",
    "PostgresServer",
    "StackConfig",
    "StackError",
    "ensure_jars",
    "ensure_topic",
    "ensure_topics",
    "free_ports",
    "partition_count",
]
