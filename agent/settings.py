"""The agent's settings (``TURNSTILE_AGENT_*``): where to send, how to batch, how to retry.

Host applications usually configure the agent through the environment; pass an
``AgentSettings(...)`` to ``Sender`` to configure it in code instead.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.retries import AGENT_MAX_RETRY_S


class AgentSettings(BaseSettings):
    """Batching, buffering and retry knobs of the in-process sender."""

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_AGENT_", frozen=True, extra="ignore")

    url: str = "http://127.0.0.1:8080"
    write_key: SecretStr = SecretStr("")
    # The project's key for hashing consumer ids (``turnstile keys hash-key``); the
    # middleware will not hash without it (an unkeyed hash can be recomputed from a guess).
    consumer_hash_key: SecretStr = SecretStr("")
    enabled: bool = True

    batch_size: int = Field(default=1000, ge=1, le=10_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    max_queue_events: int = Field(default=100_000, ge=1)
    gzip: bool = True

    request_timeout_s: float = Field(default=10.0, gt=0)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    # A batch still unsent after this long is dropped (and counted), so one outage cannot
    # pin the sender to one batch forever; the queue behind it is bounded anyway. Never
    # above the speed layer's dedupe horizon (schemas.retries), or a late retry counts twice.
    max_retry_s: float = Field(default=AGENT_MAX_RETRY_S, gt=0, le=AGENT_MAX_RETRY_S)
    shutdown_timeout_s: float = Field(default=5.0, ge=0)
