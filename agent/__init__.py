"""Turnstile agent: capture every request of an API and ship it, batched, to the gateway.

    from agent import Sender, TurnstileASGI
    app.add_middleware(TurnstileASGI, sender=Sender())

Flask: ``agent.wsgi.instrument_flask(app, Sender())``; Django: add
``"agent.django.TurnstileMiddleware"`` to ``MIDDLEWARE``.
"""

from agent.asgi import TurnstileASGI
from agent.capture import CaptureOptions
from agent.sender import Sender, SenderStats
from agent.settings import AgentSettings
from agent.wsgi import TurnstileWSGI, instrument_flask

__all__ = [
    "AgentSettings",
    "CaptureOptions",
    "Sender",
    "SenderStats",
    "TurnstileASGI",
    "TurnstileWSGI",
    "instrument_flask",
]
