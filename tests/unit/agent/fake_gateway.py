"""A local HTTP server that answers like the gateway, scripted per request."""

from __future__ import annotations

import gzip
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Received:
    headers: dict[str, str]
    events: list[dict[str, Any]]


@dataclass
class FakeGateway:
    server: ThreadingHTTPServer
    script: deque = field(default_factory=deque)  # (status, headers) answers, then 202s
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for r in self.received for e in r.events]


def start_fake_gateway() -> FakeGateway:
    holder: dict[str, FakeGateway] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            gw = holder["gw"]
            assert self.path == "/api/v1/events/batch"
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            events = orjson.loads(raw)
            with gw.lock:
                gw.received.append(Received(dict(self.headers.items()), events))
                status, headers, *answer = gw.script.popleft() if gw.script else (202, {})
            body = orjson.dumps(answer[0] if answer else
                                {"accepted": len(events), "rejected": []} if status == 202
                                else {"type": "about:blank", "title": "scripted",
                                      "status": status, "detail": "scripted"})
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    gw = FakeGateway(server)
    holder["gw"] = gw
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return gw
