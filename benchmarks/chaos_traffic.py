"""Steady loadgen traffic for one fault's phase, with the time each batch was accepted.

Each fault gets a project of its own, so what billing and ``metrics_1m`` hold for that
project says exactly what the fault cost. The sender is loadgen's ``DirectSender``
(retries 503s and resets with the same batch id); the subclass only notes when each
batch started and when its 202 came, which is what "events delayed" is measured from.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from turnstile_cli.loadgen import (
    DirectSender,
    GroundTruth,
    SendReport,
    Traffic,
    TrafficSpec,
    generate,
    ground_truth,
)


@dataclass(frozen=True)
class BatchTiming:
    batch_id: str
    events: int
    started: float  # monotonic
    accepted: float


class TimedSender(DirectSender):
    """``DirectSender`` that records each batch's first attempt and its 202."""

    def __init__(self, url: str, keys: dict[str, str], max_retry_s: float) -> None:
        super().__init__(url, keys, max_retry_s=max_retry_s, timeout_s=15.0)
        self.timings: list[BatchTiming] = []
        self._timing_lock = threading.Lock()

    def _post(self, client: httpx.Client, body: bytes, key: str, batch_id: str,
              count: int) -> None:
        started = time.monotonic()
        super()._post(client, body, key, batch_id, count)
        with self._timing_lock:
            self.timings.append(BatchTiming(batch_id, count, started, time.monotonic()))


@dataclass
class Phase:
    """One fault's traffic: sent in a thread while the fault happens."""

    project: str
    traffic: Traffic
    sender: TimedSender
    rate: float
    report: SendReport | None = None
    error: str | None = None
    thread: threading.Thread | None = None
    truth: GroundTruth | None = None
    started: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"chaos-{self.project}",
                                       daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self) -> None:
        try:
            self.report = self.sender.send(self.traffic, self.rate)
        except Exception as exc:  # noqa: BLE001 - reported as the phase's failure
            self.error = f"{type(exc).__name__}: {exc}"

    def join(self, timeout: float) -> None:
        if self.thread is None:
            raise RuntimeError("phase not started")
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.error = self.error or f"sender still running after {timeout:.0f} s"
        if self.report is not None:
            self.truth = ground_truth(self.traffic, self.report.duplicate_batch_ids)

    def events_delayed(self, since: float, until: float, consumers_stopped: bool) -> int:
        """Events held up while the fault lasted (``since``..``until``).

        With a consumer stopped, every event accepted meanwhile waited in Kafka; otherwise
        only those whose batch took over a second to be accepted (retried or stalled).
        """
        return sum(t.events for t in self.sender.timings
                   if t.accepted >= since and t.started <= until
                   and (consumers_stopped or t.accepted - t.started > 1.0))

    @property
    def last_timestamp_us(self) -> int:
        return int(self.traffic.timestamp_ms.max()) * 1000


def make_phase(project: str, key: str, url: str, *, seed: int, seconds: float, rate: float,
               start_us: int, run_id: str, max_retry_s: float) -> Phase:
    """``seconds`` of traffic at ``rate`` events/s, 1 % duplicate batches, 2 % late events."""
    spec = TrafficSpec(
        seed=seed, events=max(200, int(seconds * rate)), events_per_s=rate, start_us=start_us,
        projects=(project,), consumers=24, batch_size=50, duplicate_rate=0.01,
        late_rate=0.02, beyond_share=0.5, in_flight=2, run_id=run_id)
    return Phase(project, generate(spec), TimedSender(url, {project: key}, max_retry_s), rate)
