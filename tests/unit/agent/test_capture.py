import pytest

from agent.capture import (
    CaptureOptions,
    MissingHashKey,
    build_event,
    client_ip,
    consumer_id,
    hash_consumer,
    resolve_options,
    template_from_rule,
)
from agent.settings import AgentSettings

pytestmark = pytest.mark.unit


def test_consumer_is_hashed_by_default_and_stable():
    opts = resolve_options(None, AgentSettings(consumer_hash_key="project-key"))
    h = consumer_id("secret-key-of-acme", opts)
    assert h == consumer_id("secret-key-of-acme", opts) == hash_consumer("secret-key-of-acme",
                                                                         "project-key")
    assert "acme" not in h and len(h) == 24
    assert consumer_id("x", CaptureOptions(hash_key="other")) != consumer_id("x", opts)
    assert consumer_id("acme", CaptureOptions(hash_consumer=False)) == "acme"
    assert consumer_id(None, opts) is None
    assert hash_consumer("a", "k") != hash_consumer("b", "k")


def test_hashing_without_a_key_is_refused_at_startup(monkeypatch):
    monkeypatch.delenv("TURNSTILE_AGENT_CONSUMER_HASH_KEY", raising=False)
    with pytest.raises(MissingHashKey, match="TURNSTILE_AGENT_CONSUMER_HASH_KEY"):
        resolve_options(None, AgentSettings())
    assert resolve_options(CaptureOptions(hash_consumer=False), AgentSettings()).hash_key is None
    assert resolve_options(CaptureOptions(hash_key="k"), AgentSettings()).hash_key == "k"
    # A disabled agent sends nothing, so it need not be configured.
    assert resolve_options(None, AgentSettings(enabled=False)).hash_consumer


def test_the_hash_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TURNSTILE_AGENT_CONSUMER_HASH_KEY", "from-env")
    opts = resolve_options(None, AgentSettings())
    assert opts.hash_key == "from-env"
    assert consumer_id("c", opts) == hash_consumer("c", "from-env") != hash_consumer("c", "")


def test_every_middleware_refuses_to_hash_without_a_key(monkeypatch):
    from agent.asgi import TurnstileASGI
    from agent.sender import Sender
    from agent.wsgi import TurnstileWSGI

    monkeypatch.delenv("TURNSTILE_AGENT_CONSUMER_HASH_KEY", raising=False)
    sender = Sender(AgentSettings(url="http://127.0.0.1:9"))
    try:
        with pytest.raises(MissingHashKey):
            TurnstileASGI(lambda *a: None, sender)
        with pytest.raises(MissingHashKey):
            TurnstileWSGI(lambda *a: None, sender)
    finally:
        sender.close(timeout=0)


@pytest.mark.parametrize(("peer", "xff", "trusted", "expected"), [
    ("10.0.0.1", "1.2.3.4", 0, "10.0.0.1"),
    ("10.0.0.1", "1.2.3.4", 1, "1.2.3.4"),
    ("10.0.0.1", "6.6.6.6, 1.2.3.4", 1, "1.2.3.4"),
    ("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.9", 2, "1.2.3.4"),
    ("10.0.0.1", "1.2.3.4", 3, "1.2.3.4"),
    ("10.0.0.1", None, 1, "10.0.0.1"),
])
def test_forwarded_for_is_trusted_only_as_configured(peer, xff, trusted, expected):
    assert client_ip(peer, xff, trusted) == expected


@pytest.mark.parametrize(("rule", "template"), [
    ("/users/<int:user_id>", "/users/{user_id}"),
    ("/files/<path:name>/raw", "/files/{name}/raw"),
    ("/plain", "/plain"),
    ("orders/<slug:slug>/", "/orders/{slug}/"),
    ("items/<pk>", "/items/{pk}"),
])
def test_rules_become_templates(rule, template):
    assert template_from_rule(rule) == template


def test_event_leaves_out_absent_fields_and_bounds_sizes():
    ev = build_event(event_id="e", timestamp=1.5, method="GET", path="/p" * 2000, endpoint=None,
                     status_code=200, latency_ms=1.0, request_bytes=0, response_bytes=3,
                     api_key=None, ip=None, user_agent="u" * 1000, country="germany",
                     function=None)
    assert "endpoint" not in ev and "api_key" not in ev and "country" not in ev
    assert len(ev["path"]) == 2048 and len(ev["user_agent"]) == 512
