import pytest

pytestmark = pytest.mark.unit

django = pytest.importorskip("django")
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="tests.unit.agent.django_urls",
        MIDDLEWARE=["agent.django.TurnstileMiddleware"],
        TURNSTILE_AGENT={},
        SECRET_KEY="test-only",
        DATABASES={},
        INSTALLED_APPS=[],
    )
    django.setup()

from django.test import Client, override_settings  # noqa: E402

from agent.capture import CaptureOptions  # noqa: E402


def test_django_requests_become_events(make_sender, fake_gateway):
    sender = make_sender()
    opts = CaptureOptions(consumer_header="x-customer", hash_consumer=False)
    with override_settings(TURNSTILE_AGENT={"sender": sender, "options": opts}):
        client = Client(raise_request_exception=False)
        client.get("/users/12/", headers={"X-Customer": "acme"})
        assert b"".join(client.get("/stream/").streaming_content) == b"x" * 30
        client.get("/boom/")
        client.get("/nothing/")
        client.post("/users/3/", data=b"12345", content_type="application/octet-stream")
    assert sender.flush(5)
    user, stream, boom, missing, post = fake_gateway.events()
    assert user["endpoint"] == "/users/{pk}/" and user["path"] == "/users/12/"
    assert user["api_key"] == "acme" and user["function"] == "user"
    assert user["response_bytes"] == len(b"user 12")
    assert stream["response_bytes"] == 30
    assert boom["status_code"] == 500 and boom["endpoint"] == "/boom/"
    assert missing["status_code"] == 404
    assert post["request_bytes"] == 5 and post["method"] == "POST"
