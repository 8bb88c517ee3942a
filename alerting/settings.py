"""Settings of ``turnstile alerting``: ``TURNSTILE_ALERTING_*`` plus the shared database URL."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
    # Email rules: an SMTP relay. "starttls" upgrades port 587, "ssl" is implicit TLS
    # (465), "plain" only for a local relay. ``smtp_ca_file`` trusts a private CA.
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "ssl", "plain"] = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "turnstile-alerts@localhost"
    smtp_ca_file: Path | None = None
    # Links in notifications point here (the query API serves the dashboard at /).
    dashboard_base_url: str = "http://localhost:8090"
