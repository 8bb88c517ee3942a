"""Settings of ``turnstile alerting``: ``TURNSTILE_ALERTING_*`` plus the shared database URL."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.alerts import AlertTargetPolicy
from schemas.settings import DatabaseSettings


class AlertingSettings(BaseSettings):
    """How often rules run and how notifications are sent."""

    model_config = SettingsConfigDict(env_prefix="TURNSTILE_ALERTING_", frozen=True,
                                      extra="ignore")

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    interval_s: float = Field(default=60.0, gt=0, le=3600)
    # /healthz, /readyz, /metrics on 127.0.0.1 (TURNSTILE_ALERTING_OPS_PORT; 0 = any port).
    ops_port: int = Field(default=9104, ge=0, le=65535)
    # PagerDuty Events API v2 endpoint (a rule's target is its integration's routing key).
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    # Where Slack and webhook rules may send (also enforced by the query API).
    targets: AlertTargetPolicy = Field(default_factory=AlertTargetPolicy)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Tries per round, and rounds before an undeliverable notification is marked failed.
    attempts_per_round: int = Field(default=3, ge=1, le=10)
    max_rounds: int = Field(default=5, ge=1, le=100)
