"""A local HTTP server that answers like Slack incoming webhooks, PagerDuty's Events API v2
and a plain webhook, checking each request the way the real services do."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from alerting.webhook_signing import EVENT_ID_HEADER, SIGNATURE_HEADER, verify

SLACK_PATH = "/services/T0001/B0001/abcdef"
PAGERDUTY_PATH = "/v2/enqueue"
WEBHOOK_PATH = "/hook"
_SEVERITIES = {"critical", "error", "warning", "info"}


def pagerduty_errors(body: dict[str, Any]) -> list[str]:
    errors = []
    if not isinstance(body.get("routing_key"), str) or len(body["routing_key"]) != 32:
        errors.append("'routing_key' must be a 32 character integration key")
    if body.get("event_action") not in {"trigger", "acknowledge", "resolve"}:
        errors.append("'event_action' is invalid")
    if body.get("event_action") != "trigger" and not body.get("dedup_key"):
        errors.append("'dedup_key' is required to acknowledge or resolve")
    if body.get("event_action") == "trigger":
        payload = body.get("payload") or {}
        for name in ("summary", "source", "severity"):
            if not payload.get(name):
                errors.append(f"'payload.{name}' is missing")
        if payload.get("severity") not in _SEVERITIES:
            errors.append("'payload.severity' is invalid")
        if len(payload.get("summary", "")) > 1024:
            errors.append("'payload.summary' is too long")
    return errors


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.webhook_failures = 0  # answer 500 to this many webhook calls first
        # When set, webhooks must carry a valid Turnstile-Signature (else 401, reason kept).
        self.webhook_secret: str | None = None
        self.refused: list[str] = []
        # When set, a webhook call waits for it before answering (a send in flight).
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()  # a webhook call arrived (possibly held)
        self.accepted: list[str] = []  # event ids answered 2xx, in order
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                    return self._answer(400, b"invalid_payload")
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._answer(400, b"invalid_payload")
                receiver.requests.append((self.path, body))
                if self.path == SLACK_PATH:
                    ok = isinstance(body.get("text"), str) and body["text"]
                    return self._answer(200, b"ok") if ok else self._answer(400, b"no_text")
                if self.path == PAGERDUTY_PATH:
                    errors = pagerduty_errors(body)
                    if errors:
                        reply = {"status": "invalid event", "message": "Event object is invalid",
                                 "errors": errors}
                        return self._answer(400, json.dumps(reply).encode(), "application/json")
                    reply = {"status": "success", "message": "Event processed",
                             "dedup_key": body.get("dedup_key")}
                    return self._answer(202, json.dumps(reply).encode(), "application/json")
                if self.path == WEBHOOK_PATH:
                    if receiver.webhook_secret is not None:
                        problem = verify(receiver.webhook_secret, raw,
                                         self.headers.get(SIGNATURE_HEADER, ""))
                        if problem is not None:
                            receiver.refused.append(problem)
                            return self._answer(401, problem.encode())
                    receiver.arrived.set()
                    hold = receiver.hold
                    if hold is not None:
                        hold.wait(60)
                        if hold is not receiver.hold:  # abandoned: its sender was killed
                            return None
                    if receiver.webhook_failures > 0:
                        receiver.webhook_failures -= 1
                        return self._answer(500, b"try later")
                    receiver.accepted.append(self.headers.get(EVENT_ID_HEADER, ""))
                    return self._answer(204, b"")
                return self._answer(404, b"no_service")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def to(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
