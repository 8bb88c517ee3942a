"""What every consumer (speed layer, lake writer, billing, alerting) reports, defined once.

``ComponentOps`` bundles a service's operations side: the ``OpsServer`` (/healthz,
/readyz, /metrics), its ``Heartbeat`` row, the Prometheus families below (one per figure,
a ``component`` label each, so one dashboard panel covers every layer), and readiness
checks of its dependencies. A check is green only when a background probe reaches the
dependency *and* the component itself has not seen it fail since (a writer waiting out
an outage turns readiness false at once, not at the next probe).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import psycopg
from prometheus_client import Counter, Gauge

from schemas.ops import Heartbeat, HeartbeatState, OpsServer

log = logging.getLogger(__name__)

PROBE_INTERVAL_S: Final = 3.0

EVENTS_IN: Final = Counter(
    "turnstile_consumer_events_in", "Events (or rows) a component read.", ["component"])
EVENTS_OUT: Final = Counter(
    "turnstile_consumer_events_out", "Events or rows a component wrote durably.", ["component"])
ERRORS: Final = Counter(
    "turnstile_consumer_errors", "Failures a component met and survived, by kind.",
    ["component", "kind"])
CONSUMER_LAG: Final = Gauge(
    "turnstile_consumer_lag_events",
    "Kafka consumer lag per partition: high watermark minus the consumer's position.",
    ["component", "topic", "partition"])
LAST_SUCCESS: Final = Gauge(
    "turnstile_consumer_last_success_timestamp_seconds",
    "Unix time of the component's last successful write or commit.", ["component"])
DEPENDENCY_UP: Final = Gauge(
    "turnstile_consumer_dependency_up", "1 while a dependency is reachable, else 0.",
    ["component", "dependency"])


def postgres_probe(dsn: str) -> Callable[[], bool]:
    def probe() -> bool:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    return probe


def kafka_probe(bootstrap: str) -> Callable[[], bool]:
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka would print every refused connection to stderr.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})

    def probe() -> bool:
        return bool(admin.list_topics(timeout=2).brokers)
    return probe


class ComponentOps:
    """The operations side of one running component; ``start`` it, ``stop`` it at the end."""

    def __init__(self, component: str, port: int, dsn: str, *,
                 probes: dict[str, Callable[[], bool]] | None = None,
                 heartbeat: bool = True) -> None:
        self.component = component
        self.state = HeartbeatState()
        self._probes = dict(probes or {})
        self._probed: dict[str, bool] = dict.fromkeys(self._probes, False)
        self._own: dict[str, bool] = dict.fromkeys(self._probes, True)
        self._lag: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._port = port
        self.server: OpsServer | None = None
        self.heartbeat = Heartbeat(dsn, component, self.state) if heartbeat else None
        self._thread = threading.Thread(target=self._probe_loop, daemon=True,
                                        name=f"turnstile-probe-{component}")

    @property
    def port(self) -> int:
        return self.server.port if self.server is not None else self._port

    def start(self) -> ComponentOps:
        """Probe once, then serve the ops routes and publish heartbeats."""
        self._probe_once()
        self._thread.start()
        try:
            self.server = OpsServer(self.component, self._port, checks={
                name: self._check(name) for name in self._probes}).start()
        except OSError as exc:  # the work matters more than its metrics: go on without
            log.error("%s: ops port %d not served (%s); /healthz, /readyz and /metrics are "
                      "unavailable", self.component, self._port, exc)
        if self.heartbeat is not None:
            self.heartbeat.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()

    # -- what the component reports ---------------------------------------------------

    def _check(self, dependency: str) -> Callable[[], bool]:
        return lambda: self.ready(dependency)

    def ready(self, dependency: str) -> bool:
        with self._lock:
            return self._probed.get(dependency, False) and self._own.get(dependency, True)

    def dependency_failed(self, dependency: str) -> None:
        """The component itself could not reach ``dependency``: not ready until it can."""
        with self._lock:
            self._own[dependency] = False
        DEPENDENCY_UP.labels(self.component, dependency).set(0)
        self.state.state = "waiting"

    def dependency_ok(self, dependency: str) -> None:
        with self._lock:
            self._own[dependency] = True

    def success(self) -> None:
        """A write or commit landed: the last-success gauge and the heartbeat move."""
        LAST_SUCCESS.labels(self.component).set(time.time())
        self.state.success()

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        CONSUMER_LAG.labels(self.component, topic, str(partition)).set(lag)
        with self._lock:
            self._lag[(topic, partition)] = lag
            self.state.lag_events = sum(self._lag.values())

    def forget_lag(self, topic: str, partition: int) -> None:
        with self._lock:
            self._lag.pop((topic, partition), None)
            self.state.lag_events = sum(self._lag.values()) if self._lag else None
        try:
            CONSUMER_LAG.remove(self.component, topic, str(partition))
        except KeyError:
            pass

    def details(self, **values: Any) -> None:
        self.state.details.update(values)

    # -- probes -----------------------------------------------------------------------

    def _probe_once(self) -> None:
        for name, probe in self._probes.items():
            try:
                ok = bool(probe())
            except Exception:  # noqa: BLE001 - unreachable is an answer, not a crash
                ok = False
            with self._lock:
                self._probed[name] = ok
                if ok:
                    # A probe that gets through does not clear the component's own
                    # failure: the component says when its own connection works again.
                    own = self._own.get(name, True)
                else:
                    own = False
            DEPENDENCY_UP.labels(self.component, name).set(1 if ok and own else 0)

    def _probe_loop(self) -> None:
        while not self._stop.wait(PROBE_INTERVAL_S):
            self._probe_once()


def no_ops(component: str) -> ComponentOps:
    """An instance that is never started (flows built in tests): it only counts."""
    return ComponentOps(component, 0, "", heartbeat=False)
