"""Connection settings shared by every service: Kafka, PostgreSQL and the local state folder.

Each service builds its own frozen settings object at its entry point and nests these
sections, so the environment variables below are defined once:

- ``TURNSTILE_KAFKA_BOOTSTRAP``, ``TURNSTILE_KAFKA_EVENTS_TOPIC``,
  ``TURNSTILE_KAFKA_EVENTS_PARTITIONS``
- ``TURNSTILE_DATABASE_URL``
- ``TURNSTILE_STATE_DIR``
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC

DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_POSTGRES_PORT = 15432


class KafkaSettings(BaseSettings):
    """Where the events topic lives and how it is laid out."""

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_KAFKA_", frozen=True, extra="ignore")

    bootstrap: str = f"127.0.0.1:{DEFAULT_KAFKA_PORT}"
    events_topic: str = EVENTS_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    events_partitions: int = Field(default=12, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)


class DatabaseSettings(BaseSettings):
    """The PostgreSQL DSN; a libpq URL such as ``postgresql://user:pw@host:port/db``."""

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_DATABASE_", frozen=True, extra="ignore")

    url: SecretStr = SecretStr(
        f"postgresql://turnstile@127.0.0.1:{DEFAULT_POSTGRES_PORT}/turnstile"
    )

    def dsn(self) -> str:
        return self.url.get_secret_value()


class StateSettings(BaseSettings):
    """The local state folder: broker log dirs, PostgreSQL cluster, lake, snapshots, PIDs."""

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_", frozen=True, extra="ignore")

    state_dir: Path = Path(".turnstile")
