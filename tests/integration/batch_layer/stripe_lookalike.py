"""A local Stripe that enforces the meter event rules of the real API, over real HTTP.

Rules (Stripe's documentation, /work/shared/FINDINGS.md): v1 meter events are form encoded
with an Idempotency-Key replayed for 24 h; ``identifier`` is unique for 24 h; timestamps
within the past 35 days and at most 5 minutes ahead; whole-number values; a second call
for a (customer, meter) while one is in flight gets 429; cancellation (v1 meter event
adjustments) only within 24 h of receipt; event summaries sum accepted minus cancelled
events; the v2 stream takes 1..100 events per call with a session token that expires
after 15 minutes. ``advance()`` moves the server's clock, so a test can pass 24 hours
without sleeping. Stricter than Stripe in one way: the v2 stream validates synchronously
(Stripe accepts the batch and reports invalid events later).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

API_KEY = "sk_test_turnstile"
DAY_S = 86_400
WHOLE = re.compile(r"^[0-9]+$")
METERS = {"api_requests": "mtr_api_requests", "search_requests": "mtr_search_requests"}


@dataclass
class Event:
    identifier: str
    event_name: str
    customer: str
    value: int
    timestamp: int
    received_at: float
    channel: str
    cancelled_at: float | None = None


class Refusal(Exception):  # noqa: N818 - an HTTP answer, not a bug
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers = headers or {}


class StripeLookalike(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, meters: dict[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.meters = dict(meters or METERS)  # event_name -> meter id
        self.offset = 0.0
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self._by_identifier: dict[str, Event] = {}       # the newest event per identifier
        self._by_lane: dict[tuple[str, str], list[Event]] = {}
        self.idempotency: dict[str, tuple[float, str, int, dict[str, Any]]] = {}
        self.in_flight: set[tuple[str, str]] = set()
        self.sessions: dict[str, float] = {}  # token -> expires at
        self.problems: list[str] = []
        self.calls: Counter[str] = Counter()
        self.force_429 = 0              # answer this many meter event calls with 429
        self.retry_after: str | None = "1"
        self.hold_s = 0.0               # how long a v1 meter event call takes
        self.stream_duplicates = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def now(self) -> float:
        return time.time() + self.offset

    def clock(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def billed(self, customer: str, event_name: str, start: int, end: int) -> int:
        """Accepted minus cancelled, as event summaries report it."""
        with self.lock:
            lane = self._by_lane.get((customer, event_name), [])
            return sum(e.value for e in lane if start <= e.timestamp < end
                       and e.cancelled_at is None)

    def accept(self, event: Event) -> None:
        """Record an accepted event (call with the lock held)."""
        self.events.append(event)
        self._by_identifier[event.identifier] = event
        self._by_lane.setdefault((event.customer, event.event_name), []).append(event)

    def forget(self, customer: str) -> None:
        """Drop a customer's events, as if they never arrived (tests of lost calls)."""
        with self.lock:
            self.events = [e for e in self.events if e.customer != customer]
            self._by_identifier = {e.identifier: e for e in self.events}
            self._by_lane = {k: v for k, v in self._by_lane.items() if k[0] != customer}

    def live(self) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.cancelled_at is None]

    # -- rules --------------------------------------------------------------------------

    def check_timestamp(self, ts: int) -> None:
        now = self.now()
        if ts < now - 35 * DAY_S:
            raise Refusal(400, f"timestamp {ts} is more than 35 days in the past")
        if ts > now + 300:
            raise Refusal(400, f"timestamp {ts} is more than 5 minutes in the future")

    def recent_identifier(self, identifier: str) -> Event | None:
        """The event holding ``identifier`` while Stripe still remembers it (24 h)."""
        event = self._by_identifier.get(identifier)
        return event if event is not None and event.received_at >= self.now() - DAY_S else None


def _whole(value: Any, what: str) -> int:
    if not isinstance(value, str) or not WHOLE.match(value):
        raise Refusal(400, f"{what} must be a whole number, got {value!r}")
    return int(value)


class _Handler(BaseHTTPRequestHandler):
    server: StripeLookalike
    protocol_version = "HTTP/1.1"  # keep-alive, as Stripe (every answer has a length)
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
               ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, r: Refusal) -> None:
        if r.status != 429:
            self.server.problems.append(r.message)
        error: dict[str, Any] = {"type": r.kind, "message": r.message}
        if r.code:
            error["code"] = r.code
        self._reply(r.status, {"error": error}, r.headers)

    def _body(self) -> str:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()

    def _bearer(self) -> str:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else ""

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        route = re.sub(r"/meters/[^/]+/", "/meters/{id}/", url.path)
        self.server.calls[f"{method} {route}"] += 1
        try:
            if url.path == "/v2/billing/meter_event_stream":
                return self._stream()
            if self._bearer() != API_KEY:
                raise Refusal(401, "Invalid API Key provided", "authentication_error")
            handlers = {
                ("POST", "/v1/billing/meter_events"): self._meter_event,
                ("POST", "/v1/billing/meter_event_adjustments"): self._adjustment,
                ("GET", "/v1/billing/meters"): self._meters,
                ("GET", "/v1/billing/meters/{id}/event_summaries"): self._summaries,
                ("POST", "/v2/billing/meter_event_session"): self._session,
            }
            handler = handlers.get((method, route))
            if handler is None:
                raise Refusal(404, f"Unrecognized request URL ({method}: {url.path})")
            if method == "GET":
                handler(parse_qs(url.query, keep_blank_values=True), url.path)
            else:
                self._idempotent(handler)
        except Refusal as r:
            self._refuse(r)

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731

    def _idempotent(self, handler: Any) -> None:
        body = self._body()
        if urlsplit(self.path).path.startswith("/v1/") and not self.headers.get(
                "Content-Type", "").startswith("application/x-www-form-urlencoded"):
            raise Refusal(400, "v1 requests must be form encoded")
        key = self.headers.get("Idempotency-Key")
        s = self.server
        if key:
            with s.lock:
                seen = s.idempotency.get(key)
            if seen and seen[0] > s.now() - DAY_S:
                if seen[1] != body:
                    raise Refusal(400, f"Keys for idempotent requests can only be used with"
                                  f" the same parameters they were first used with ({key})",
                                  "idempotency_error")
                return self._reply(seen[2], seen[3], {"Idempotent-Replayed": "true"})
        try:
            status, answer = handler(body)
        except Refusal as r:
            if key and r.status != 429:
                with s.lock:
                    s.idempotency[key] = (s.now(), body, r.status,
                                          {"error": {"type": r.kind, "message": r.message}})
            raise
        if key:
            with s.lock:
                s.idempotency[key] = (s.now(), body, status, answer)
        self._reply(status, answer)

    def _form(self, body: str) -> dict[str, str]:
        try:
            return {k: v[0] for k, v in parse_qs(body, strict_parsing=True,
                                                 keep_blank_values=True).items()}
        except ValueError as exc:
            raise Refusal(400, f"unreadable form body: {exc}") from None

    def _meter_event(self, body: str) -> tuple[int, dict[str, Any]]:
        s = self.server
        form = self._form(body)
        for name in ("event_name", "payload[stripe_customer_id]", "payload[value]"):
            if not form.get(name):
                raise Refusal(400, f"Missing required param: {name}.")
        identifier = form.get("identifier") or uuid.uuid4().hex
        if len(identifier) > 100:
            raise Refusal(400, "identifier: at most 100 characters")
        value = _whole(form["payload[value]"], "payload[value]")
        ts = _whole(form.get("timestamp", str(int(s.now()))), "timestamp")
        s.check_timestamp(ts)
        lane = (form["payload[stripe_customer_id]"], form["event_name"])
        with s.lock:
            if s.force_429 > 0:
                s.force_429 -= 1
                headers = {"Retry-After": s.retry_after} if s.retry_after else {}
                raise Refusal(429, "Too many requests", "invalid_request_error", "rate_limit",
                              headers)
            if lane in s.in_flight:
                raise Refusal(429, "Only one concurrent call per customer and meter",
                              "invalid_request_error", "rate_limit")
            if s.recent_identifier(identifier) is not None:
                raise Refusal(400, f"An event with identifier {identifier} already exists")
            s.in_flight.add(lane)
        try:
            if s.hold_s:
                time.sleep(s.hold_s)
            with s.lock:
                s.accept(Event(identifier, form["event_name"], lane[0], value, ts, s.now(),
                               "v1"))
        finally:
            with s.lock:
                s.in_flight.discard(lane)
        return 200, {"object": "billing.meter_event", "livemode": False,
                     "created": int(s.now()), "event_name": form["event_name"],
                     "identifier": identifier, "timestamp": ts,
                     "payload": {"stripe_customer_id": lane[0], "value": str(value)}}

    def _adjustment(self, body: str) -> tuple[int, dict[str, Any]]:
        s = self.server
        form = self._form(body)
        if form.get("type") != "cancel":
            raise Refusal(400, "type: only 'cancel' is supported")
        identifier, event_name = form.get("cancel[identifier]"), form.get("event_name")
        if not identifier or not event_name:
            raise Refusal(400, "Missing required param: event_name and cancel[identifier].")
        with s.lock:
            event = s._by_identifier.get(identifier)
            if event is None or event.event_name != event_name:
                raise Refusal(400, f"No meter event with identifier {identifier}",
                              code="resource_missing")
            if event.cancelled_at is not None:
                raise Refusal(400, f"Meter event {identifier} is already cancelled")
            if s.now() - event.received_at > DAY_S:
                raise Refusal(400, "Meter events can only be cancelled within 24 hours of"
                              " receipt")
            event.cancelled_at = s.now()
        return 200, {"object": "billing.meter_event_adjustment", "livemode": False,
                     "event_name": event_name, "status": "pending", "type": "cancel",
                     "cancel": {"identifier": identifier}}

    def _meters(self, query: dict[str, list[str]], path: str) -> None:
        data = [{"id": mid, "object": "billing.meter", "event_name": name, "status": "active",
                 "default_aggregation": {"formula": "sum"},
                 "customer_mapping": {"event_payload_key": "stripe_customer_id",
                                      "type": "by_id"},
                 "value_settings": {"event_payload_key": "value"}}
                for name, mid in sorted(self.server.meters.items())]
        self._reply(200, {"object": "list", "data": data, "has_more": False,
                          "url": "/v1/billing/meters"})

    def _summaries(self, query: dict[str, list[str]], path: str) -> None:
        meter_id = path.split("/")[4]
        names = {mid: name for name, mid in self.server.meters.items()}
        if meter_id not in names:
            raise Refusal(404, f"No such billing meter: '{meter_id}'", code="resource_missing")
        params = {k: v[0] for k, v in query.items()}
        for name in ("customer", "start_time", "end_time"):
            if not params.get(name):
                raise Refusal(400, f"Missing required param: {name}.")
        start = _whole(params["start_time"], "start_time")
        end = _whole(params["end_time"], "end_time")
        if start % 60 or end % 60 or start >= end:
            raise Refusal(400, "start_time and end_time must be minute-aligned, start < end")
        value = self.server.billed(params["customer"], names[meter_id], start, end)
        self._reply(200, {"object": "list", "has_more": False,
                          "url": f"/v1/billing/meters/{meter_id}/event_summaries",
                          "data": [{"id": f"mtrusg_{uuid.uuid4().hex[:12]}",
                                    "object": "billing.meter_event_summary",
                                    "aggregated_value": float(value), "start_time": start,
                                    "end_time": end, "livemode": False, "meter": meter_id}]})

    def _session(self, body: str) -> tuple[int, dict[str, Any]]:
        s = self.server
        token = f"mes_tok_{uuid.uuid4().hex}"
        now = s.now()
        with s.lock:
            s.sessions[token] = now + 900
        iso = lambda t: datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")  # noqa: E731
        return 200, {"id": f"mes_{uuid.uuid4().hex[:16]}",
                     "object": "v2.billing.meter_event_session", "authentication_token": token,
                     "created": iso(now), "expires_at": iso(now + 900), "livemode": False}

    def _stream(self) -> None:
        s = self.server
        token = self._bearer()
        with s.lock:
            expires = s.sessions.get(token)
        if expires is None:
            raise Refusal(401, "The meter event session token is not valid",
                          "authentication_error")
        if s.now() >= expires:
            raise Refusal(401, "The meter event session has expired",
                          "temporary_session_expired", "billing_meter_event_session_expired")
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            raise Refusal(400, "v2 requests must be JSON")
        try:
            events = json.loads(self._body())["events"]
        except (ValueError, KeyError, TypeError):
            raise Refusal(400, "body must be {\"events\": [...]}") from None
        if not isinstance(events, list) or not 1 <= len(events) <= 100:
            raise Refusal(400, "events: 1 to 100 events per request")
        accepted = []
        for i, e in enumerate(events):
            try:
                payload = e["payload"]
                name, customer = e["event_name"], payload["stripe_customer_id"]
                value = _whole(payload["value"], f"events[{i}].payload.value")
                ts = int(datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
                         .timestamp())
            except (KeyError, TypeError, ValueError, AttributeError):
                raise Refusal(400, f"events[{i}]: needs event_name, payload"
                              ".stripe_customer_id, payload.value, RFC 3339 timestamp") from None
            s.check_timestamp(ts)
            identifier = e.get("identifier") or uuid.uuid4().hex
            if len(identifier) > 100:
                raise Refusal(400, f"events[{i}].identifier: at most 100 characters")
            accepted.append((identifier, name, customer, value, ts))
        with s.lock:
            for identifier, name, customer, value, ts in accepted:
                if s.recent_identifier(identifier) is not None:
                    s.stream_duplicates += 1  # Stripe drops repeats inside the window
                    continue
                s.accept(Event(identifier, name, customer, value, ts, s.now(), "v2"))
        self._reply(200, {})


def start() -> tuple[StripeLookalike, threading.Thread]:
    server = StripeLookalike()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def stripe_server() -> Iterator[StripeLookalike]:
    """A look-alike per test, on a free port, stopped afterwards."""
    server, thread = start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
