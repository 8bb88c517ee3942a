"""Turnstile agent: capture every request of an API and ship it, batched, to the gateway.

    from agent import Sender, TurnstileASGI
    app.add_middleware(TurnstileASGI, sender=Sender())

Flask: ``agent.wsgi.instrument_flask(app, Sender())``; Django: add
``"agent.django.TurnstileMiddleware"`` to ``MIDDLEWARE``. The environment gives the gateway
URL, the write key and the project's consumer hash key (``TURNSTILE_AGENT_URL``,
``…_WRITE_KEY``, ``…_CONSUMER_HASH_KEY``; ``turnstile keys create`` prints them).
"""

from agent.asgi import TurnstileASGI
from agent.capture import CaptureOptions, MissingHashKey
from agent.sender import Sender, SenderStats
from agent.settings import AgentSettings
from agent.wsgi import TurnstileWSGI, instrument_flask

__all__ = [
    "AgentSettings",
    "CaptureOptions",
    "MissingHashKey",
    "Sender",
    "SenderStats",
    "TurnstileASGI",
    "TurnstileWSGI",
    "instrument_flask",
]
