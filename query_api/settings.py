"""Settings of the query API (``TURNSTILE_QUERY_*``), built once by the CLI and passed in."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.alerts import AlertTargetPolicy
from schemas.lake import LakeSettings
from schemas.settings import DatabaseSettings, StateSettings

DEFAULT_QUERY_PORT = 8090


class QuerySettings(BaseSettings):
    """Where the API listens, which database and lake it reads, and its caches and limits."""

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_QUERY_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_QUERY_PORT, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    # Where alert rules may send notifications (the alerting service reads the same policy).
    alert_targets: AlertTargetPolicy = Field(default_factory=AlertTargetPolicy)
    # The Parquet lake the batch layer writes (TURNSTILE_LAKE_URI, shared with it).
    lake: LakeSettings = Field(default_factory=LakeSettings)
    state: StateSettings = Field(default_factory=StateSettings)  # the lake's default home
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=8, ge=1)
    # Revoked keys are refused within this many seconds; a hit avoids a database round trip.
    auth_cache_ttl_s: float = Field(default=10.0, ge=0.0)
    # Guards against accidental full scans: the longest range a query may cover.
    max_range_days: int = Field(default=731, ge=1)
    # A series may have at most this many points (range / granularity).
    max_points: int = Field(default=20_000, ge=10)
    statement_timeout_ms: int = Field(default=15_000, ge=100)
    # Per sort/hash of a query: merging every consumer's digests spills to disk at
    # PostgreSQL's 4 MB default (about 1.8x slower, measured on the dashboard benchmark).
    work_mem_mb: int = Field(default=64, ge=1, le=4096)
    duckdb_threads: int = Field(default=2, ge=1)
    duckdb_memory_limit: str = "1GB"
