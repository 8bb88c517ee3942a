"""Operations endpoints of a long-running service: health, readiness, Prometheus metrics.

Services without an HTTP API of their own (speed layer, lake writer, billing scheduler,
alerting) start an ``OpsServer`` on their ops port; the HTTP services serve the same three
routes from their app. ``Heartbeat`` writes the service's state to ``pipeline_heartbeats``
every few seconds, so the query API can show every layer's state in any deployment.

- ``GET /healthz``: 200 while the process is up (liveness);
- ``GET /readyz``: 200 when every readiness check passes, else 503 naming the failed ones
  (a dependency that is gone turns it false);
- ``GET /metrics``: the process's Prometheus registry.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as _multiprocess

log = logging.getLogger(__name__)

Check = Callable[[], bool]
HEARTBEAT_INTERVAL_S: Final = 5.0
# With several uvicorn workers, each writes its samples to this folder (set before they
# start) and /metrics, served by any worker, aggregates all of them.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def render_metrics() -> tuple[bytes, str]:
    """The exposition text: this process's metrics, or all workers' in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_metrics_worker_dead(pid: int) -> None:
    """Drop a stopped worker's live-gauge files (counters stay: they are totals)."""
    if os.environ.get(MULTIPROC_ENV):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _safe(check: Check) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a failing check reports "not ready", never crashes
        return False


class OpsServer:
    """A small threaded HTTP server for /healthz, /readyz and /metrics on 127.0.0.1 or any host.

    ``port=0`` picks a free port (see ``port``). Checks run on each /readyz request.
    """

    def __init__(self, component: str, port: int, host: str = "127.0.0.1",
                 checks: Mapping[str, Check] | None = None) -> None:
        self.component = component
        self.checks: dict[str, Check] = dict(checks or {})
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._json(200, {"status": "ok", "component": server.component})
                elif path == "/readyz":
                    results = {name: _safe(check) for name, check in server.checks.items()}
                    ready = all(results.values())
                    self._json(200 if ready else 503, {
                        "component": server.component, "ready": ready,
                        "checks": {k: "ok" if v else "failing" for k, v in results.items()},
                    })
                else:
                    self._json(404, {"error": f"no route {path}"})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # scrapes every few seconds would flood the service's log

        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name=f"turnstile-ops-{component}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("%s: health and metrics on http://127.0.0.1:%d/metrics", self.component,
                 self.port)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


_BEAT: Final = """
INSERT INTO pipeline_heartbeats AS h (component, instance, state, started_at, beat_at,
                                      last_success_at, lag_events, details)
VALUES (%s, %s, %s, %s, now(), %s, %s, %s::jsonb)
ON CONFLICT (component, instance) DO UPDATE SET
    state = EXCLUDED.state, started_at = EXCLUDED.started_at, beat_at = EXCLUDED.beat_at,
    last_success_at = EXCLUDED.last_success_at, lag_events = EXCLUDED.lag_events,
    details = EXCLUDED.details"""

_STOPPED: Final = """
UPDATE pipeline_heartbeats SET state = 'stopped', beat_at = now()
WHERE component = %s AND instance = %s"""


class HeartbeatState:
    """What a service reports; the service updates it, the heartbeat thread publishes it."""

    def __init__(self) -> None:
        self.state = "starting"
        self.last_success_at: datetime | None = None
        self.lag_events: int | None = None
        self.details: dict[str, Any] = {}

    def success(self) -> None:
        """Mark a successful write/commit now (and the service as running)."""
        self.state = "running"
        self.last_success_at = datetime.now(UTC)


class Heartbeat:
    """Publishes a ``HeartbeatState`` to ``pipeline_heartbeats`` until stopped.

    A database outage is logged once (and once when it is over), never raised: the
    heartbeat must not take its service down.
    """

    def __init__(self, dsn: str, component: str, state: HeartbeatState | None = None,
                 interval_s: float = HEARTBEAT_INTERVAL_S, instance: str | None = None) -> None:
        self.dsn = dsn
        self.component = component
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self.state = state or HeartbeatState()
        self.interval_s = interval_s
        self.started_at = datetime.now(UTC)
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name=f"turnstile-heartbeat-{component}",
                                        daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def beat(self) -> bool:
        """Write one heartbeat now; False (logged once per outage) when it failed."""
        s = self.state
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=3) as conn:
                conn.execute(_BEAT, (self.component, self.instance, s.state, self.started_at,
                                     s.last_success_at, s.lag_events,
                                     json.dumps(s.details, default=str)))
        except psycopg.Error as exc:
            if not self._failing:
                log.warning("%s: heartbeat not written (PostgreSQL: %s); retrying every %.0f s",
                            self.component, str(exc).strip().splitlines()[0], self.interval_s)
            self._failing = True
            return False
        if self._failing:
            log.info("%s: heartbeat written again", self.component)
        self._failing = False
        return True

    def stop(self) -> None:
        """Stop the thread and mark the instance stopped (best effort)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 5)
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=3) as conn:
                conn.execute(_STOPPED, (self.component, self.instance))
        except psycopg.Error:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.beat()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
