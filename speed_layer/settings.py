"""Settings of the speed layer, built once by ``turnstile speed`` and passed to ``build_flow``.

Environment variables: ``TURNSTILE_SPEED_*`` for the fields below, plus the shared
``TURNSTILE_KAFKA_*``, ``TURNSTILE_DATABASE_URL`` and ``TURNSTILE_STATE_DIR`` sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.retries import AGENT_MAX_RETRY_S, RETRY_DEDUPE_HORIZON_S
from schemas.settings import DatabaseSettings, KafkaSettings, StateSettings


class SpeedSettings(BaseSettings):
    """What the dataflow and its sink need to know.

    Aggregates and retention are TimescaleDB's policies (``schemas.metric_policies``).
    """

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_SPEED_", frozen=True, extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    state: StateSettings = Field(default_factory=StateSettings)

    consumer_group: str = "turnstile-speed"
    # Where a partition starts when the recovery store has no position for it.
    start_offset: Literal["earliest", "latest"] = "earliest"
    # Stop each partition once it has caught up with its end (tests, benchmarks, backfills).
    stop_at_end: bool = False
    # Records, not events: a v2 record holds the events of one HTTP batch for one partition
    # (~80 for a batch of 1,000 over 12 partitions), so 400 records is ~33,000 events a
    # poll. Measured (benchmarks/results/speed_layer.json): 400 beat 100 and 1,000.
    poll_max_records: int = Field(default=400, ge=1, le=100_000)
    idle_wait_ms: int = Field(default=50, ge=1, le=5_000)

    allowed_lateness_s: float = Field(default=300.0, ge=0)
    emit_interval_s: float = Field(default=2.0, gt=0, le=60)
    digest_compression: int = Field(default=200, ge=10, le=10_000)
    # How long a batch id is remembered: at least the agent's longest retry (schemas.retries).
    dedupe_horizon_s: float = Field(default=RETRY_DEDUPE_HORIZON_S)

    recovery: bool = True
    snapshot_interval_s: float = Field(default=10.0, gt=0)
    recovery_partitions: int = Field(default=4, ge=1, le=256)
    workers: int = Field(default=1, ge=1, le=64)
    # /healthz, /readyz and /metrics on 127.0.0.1 (TURNSTILE_SPEED_OPS_PORT; 0 = any port).
    ops_port: int = Field(default=9101, ge=0, le=65535)

    @property
    def recovery_dir(self) -> Path:
        return self.state.state_dir / "speed_layer" / "recovery"

    @property
    def allowed_lateness_us(self) -> int:
        return int(self.allowed_lateness_s * 1_000_000)

    @property
    def dedupe_horizon_ms(self) -> int:
        return int(self.dedupe_horizon_s * 1000)

    @field_validator("dedupe_horizon_s")
    @classmethod
    def _covers_the_agents_retries(cls, value: float) -> float:
        if value < RETRY_DEDUPE_HORIZON_S:
            raise ValueError(
                f"dedupe_horizon_s must be >= {RETRY_DEDUPE_HORIZON_S:g}: the agent retries a"
                f" batch for up to {AGENT_MAX_RETRY_S:g} s and a later retry would count twice")
        return value
