"""The Stripe calls of the export, each retried on 429 the way Stripe asks.

Stripe answers 429 when its rate limit is reached or when a second call for the same
(customer, meter) overlaps the first; a ``Retry-After`` header is honoured, otherwise the
wait doubles (with jitter) up to ``stripe_backoff_max_s``. The export itself makes one call
at a time, so it never overlaps itself. The v2 meter event stream is authorised by a
session token that Stripe expires after 15 minutes: it is renewed a minute early, and once
more if Stripe says it expired anyway.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import stripe

from batch_layer.settings import BatchSettings
from batch_layer.stripe_plan import MeterEvent
from batch_layer.stripe_rules import SESSION_RENEW_BEFORE, STREAM_BATCH_MAX, day_start

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], datetime]
RETRY_AFTER_CEILING_S = 600.0


class StripeKeyMissingError(ValueError):
    """The export was asked to talk to Stripe without an API key."""


def retry_after(exc: stripe.StripeError) -> float | None:
    """Seconds from a ``Retry-After`` header, when Stripe sent one."""
    headers = exc.headers or {}
    text = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return min(RETRY_AFTER_CEILING_S, max(0.0, float(text))) if text is not None else None
    except ValueError:
        return None


class StripeMeters:
    """Meter events, cancellations, meters and summaries on one Stripe account."""

    def __init__(self, settings: BatchSettings, *, clock: Clock = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if settings.stripe_api_key is None:
            raise StripeKeyMissingError(
                "TURNSTILE_BATCH_STRIPE_API_KEY is not set (or use --dry-run)")
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self._client = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(),
            base_addresses={"api": settings.stripe_api_base,
                            "meter_events": settings.stripe_meter_events_base},
            max_network_retries=settings.stripe_max_network_retries,
        )
        self._session: tuple[stripe.StripeClient, datetime] | None = None
        self._meter_ids: dict[str, str] | None = None
        self.rate_limited = 0  # 429 answers seen (and waited out)

    def _retrying(self, call: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except stripe.RateLimitError as exc:
                if attempt >= self._settings.stripe_rate_limit_retries:
                    raise
                self.rate_limited += 1
                delay = retry_after(exc)
                if delay is None:
                    cap = self._settings.stripe_backoff_max_s
                    delay = min(cap, 0.5 * 2 ** attempt) * random.uniform(0.5, 1.0)  # noqa: S311
                log.info("stripe: 429, retrying in %.2f s", delay)
                self._sleep(delay)
                attempt += 1

    def send(self, event: MeterEvent) -> None:
        """One v1 meter event; the identifier doubles as the Idempotency-Key."""
        self._retrying(lambda: self._client.v1.billing.meter_events.create(
            params={
                "event_name": event.event_name,
                "payload": {"stripe_customer_id": event.stripe_customer_id,
                            "value": str(event.value)},
                "identifier": event.identifier,
                "timestamp": event.timestamp,
            },
            options={"idempotency_key": event.identifier},
        ))

    def cancel(self, event_name: str, identifier: str) -> None:
        """Cancel one event (Stripe accepts this within 24 h of receiving the event)."""
        self._retrying(lambda: self._client.v1.billing.meter_event_adjustments.create(
            params={"event_name": event_name, "type": "cancel",
                    "cancel": {"identifier": identifier}},
            options={"idempotency_key": f"cancel-{identifier}"},
        ))

    def _stream_client(self, renew: bool = False) -> stripe.StripeClient:
        now = self._clock()
        if renew or self._session is None or self._session[1] - now < SESSION_RENEW_BEFORE:
            session = self._retrying(
                lambda: self._client.v2.billing.meter_event_session.create())
            client = stripe.StripeClient(
                session.authentication_token,
                base_addresses={"meter_events": self._settings.stripe_meter_events_base},
                max_network_retries=self._settings.stripe_max_network_retries,
            )
            expires = datetime.fromisoformat(session.expires_at.replace("Z", "+00:00"))
            self._session = (client, expires)
        return self._session[0]

    def send_stream(self, events: Sequence[MeterEvent]) -> None:
        """Up to 100 events in one call of the v2 meter event stream."""
        if not 0 < len(events) <= STREAM_BATCH_MAX:
            raise ValueError(f"a stream batch holds 1..{STREAM_BATCH_MAX} events")
        body = [{
            "event_name": e.event_name,
            "identifier": e.identifier,
            "payload": {"stripe_customer_id": e.stripe_customer_id, "value": str(e.value)},
            "timestamp": day_start(e.day).isoformat().replace("+00:00", "Z"),
        } for e in events]
        for renew in (False, True):
            stream = self._stream_client(renew).v2.billing.meter_event_stream
            try:
                self._retrying(functools.partial(
                    stream.create, params={"events": body}))  # type: ignore[typeddict-item]
                return
            except stripe.TemporarySessionExpiredError:
                if renew:
                    raise
                log.info("stripe: meter event session expired early; renewing")

    def meter_id(self, event_name: str) -> str:
        """The id of the active meter fed by ``event_name`` (summaries are per meter)."""
        if self._meter_ids is None:
            meters = self._retrying(lambda: self._client.v1.billing.meters.list(
                params={"status": "active", "limit": 100}))
            self._meter_ids = {m.event_name: m.id for m in meters.auto_paging_iter()}
        try:
            return self._meter_ids[event_name]
        except KeyError:
            raise ValueError(f"Stripe has no active meter for event_name {event_name!r}"
                             ) from None

    def summary(self, event_name: str, customer: str, start: datetime, end: datetime) -> int:
        """What Stripe has aggregated for a customer and meter in [start, end)."""
        meter = self.meter_id(event_name)
        page = self._retrying(lambda: self._client.v1.billing.meters.event_summaries.list(
            meter, params={"customer": customer, "start_time": int(start.timestamp()),
                           "end_time": int(end.timestamp())}))
        return sum(round(s.aggregated_value) for s in page.auto_paging_iter())
