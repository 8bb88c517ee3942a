import pytest
from pydantic import ValidationError

from ingest_gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit


def test_defaults_match_the_documented_limits():
    s = GatewaySettings()
    assert s.max_events == 10_000
    assert s.max_body_bytes == 5 * 1024 * 1024
    assert s.key_cache_ttl_s <= 30


def test_environment_configures_the_gateway(monkeypatch):
    monkeypatch.setenv("TURNSTILE_GATEWAY_WORKERS", "4")
    monkeypatch.setenv("TURNSTILE_GATEWAY_COUNTRY_HEADER", "CF-IPCountry")
    monkeypatch.setenv("TURNSTILE_KAFKA_BOOTSTRAP", "10.0.0.1:9092")
    s = GatewaySettings()
    assert s.workers == 4
    assert s.country_header == "CF-IPCountry"
    assert s.kafka.bootstrap == "10.0.0.1:9092"


def test_key_cache_ttl_above_30_s_is_refused():
    with pytest.raises(ValidationError):
        GatewaySettings(key_cache_ttl_s=31)


def test_burst_smaller_than_a_full_request_is_refused():
    with pytest.raises(ValidationError, match="rate_limit_burst_events"):
        GatewaySettings(max_events=10_000, rate_limit_burst_events=5_000)


def test_settings_are_frozen():
    s = GatewaySettings()
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]
