"""The gateway's settings (``TURNSTILE_GATEWAY_*``), built once at the entry point.

Limits, timeouts and the Kafka producer's tuning live here so an operator can see every knob
in one place; the shared Kafka and PostgreSQL sections come from ``schemas.settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.settings import DatabaseSettings, KafkaSettings


class GatewaySettings(BaseSettings):
    """Everything the ingestion gateway needs; immutable once built."""

    model_config = SettingsConfigDict(
        env_prefix="TURNSTILE_GATEWAY_", frozen=True, extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=2, ge=1, le=64)

    # Request limits (413 past them).
    max_events: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="decompressed")
    # A refusal sent before the body was read first discards up to this much of it, so a
    # client still sending reads the answer instead of a connection reset (body_reader).
    discard_body_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    discard_timeout_s: float = Field(default=10.0, ge=0, le=120)

    # Durability: how long a request waits for Kafka to acknowledge its whole batch.
    delivery_timeout_s: float = Field(default=5.0, gt=0, le=60)
    retry_after_s: int = Field(default=2, ge=1, le=300)
    # lz4 and 20 ms measured cheapest per event (benchmarks/gateway.py): lz4 costs the
    # gateway ~0.5 ms less CPU per 1,000 events than zstd, and 20 ms batches cut the
    # broker's CPU per event by about a quarter. zstd compresses tighter (broker disk).
    compression: Literal["zstd", "lz4", "gzip", "snappy", "none"] = "lz4"
    linger_ms: int = Field(default=20, ge=0, le=1000)
    # A record still undelivered after this is failed by librdkafka (it may already sit in
    # the broker: the agent's retry then makes a duplicate with the same batch id).
    message_timeout_ms: int = Field(default=15_000, ge=1000)
    queue_max_messages: int = Field(default=200_000, ge=1000)
    queue_max_kbytes: int = Field(default=262_144, ge=1024)

    # Keys: a revoked key stops working within this TTL.
    key_cache_ttl_s: float = Field(default=15.0, gt=0, le=30)
    unknown_key_cache_ttl_s: float = Field(default=2.0, ge=0, le=30)
    db_pool_max: int = Field(default=4, ge=1, le=64)

    # Per write key, across all workers (each worker enforces its share).
    rate_limit_events_per_s: float = Field(default=500_000.0, ge=0, description="0 = off")
    rate_limit_burst_events: int = Field(default=100_000, ge=1)

    # Enrichment.
    country_header: str | None = None
    geoip_database: Path | None = None
    ip_hash_key: SecretStr = SecretStr("")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    @model_validator(mode="after")
    def _burst_fits_a_request(self) -> GatewaySettings:
        if self.rate_limit_burst_events < self.max_events:
            raise ValueError(
                "rate_limit_burst_events must be >= max_events, "
                "or a full request could never pass the rate limit"
            )
        return self
