"""When a supervised service that exited is started again, and when the supervisor gives up.

Pure functions over immutable values with the clock passed in, so every transition is
unit-tested without processes or sleeps; ``supervisor.py`` does the I/O. A service that
exits is restarted after a delay that doubles from ``initial_backoff_s`` up to
``max_backoff_s``; a run of ``stable_after_s`` resets the delay; ``max_failures`` exits
within ``failure_window_s`` mark it ``failed`` and it is left alone until someone asks again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

State = Literal["running", "restarting", "failed", "stopped"]
STATES: tuple[State, ...] = ("running", "restarting", "failed", "stopped")


@dataclass(frozen=True)
class RestartPolicy:
    """How patient the supervisor is with a service that keeps exiting."""

    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    stable_after_s: float = 60.0
    failure_window_s: float = 300.0
    max_failures: int = 5

    def __post_init__(self) -> None:
        for name in ("initial_backoff_s", "max_backoff_s", "stable_after_s", "failure_window_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"restart policy: {name} must be > 0, got {getattr(self, name)}")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("restart policy: max_backoff_s must be >= initial_backoff_s")
        if self.max_failures < 1:
            raise ValueError(f"restart policy: max_failures must be >= 1, got {self.max_failures}")


@dataclass(frozen=True)
class ServiceState:
    """What the supervisor knows about one service; times are Unix seconds."""

    name: str
    state: State = "stopped"
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None
    last_exit_code: int | None = None
    last_error: str | None = None
    exits: tuple[float, ...] = ()  # exit times inside the failure window
    next_backoff_s: float = 0.0  # delay after the next exit; 0 means the initial one
    next_start_at: float | None = None
    restart_requested: bool = False  # stopped on request: start again at once, no penalty


def started(s: ServiceState, pid: int, now: float) -> ServiceState:
    """The service was spawned; a start out of ``restarting`` counts as a restart."""
    return replace(s, state="running", pid=pid, started_at=now, next_start_at=None,
                   restarts=s.restarts + (s.state == "restarting"), restart_requested=False)


def adopted(s: ServiceState, pid: int, started_at: float | None) -> ServiceState:
    """A running process left by an earlier supervisor is supervised again, as it is."""
    return replace(s, state="running", pid=pid, started_at=started_at, next_start_at=None)


def exited(
    s: ServiceState, now: float, policy: RestartPolicy,
    exit_code: int | None = None, last_error: str | None = None,
) -> ServiceState:
    """The process ended: schedule its restart, or give up when it keeps failing."""
    base = replace(s, pid=None, last_exit_code=exit_code,
                   last_error=last_error if last_error is not None else s.last_error)
    if s.restart_requested:
        return replace(base, state="restarting", next_start_at=now, restart_requested=False)
    ran = now - s.started_at if s.started_at is not None else 0.0
    exits = tuple(t for t in s.exits if now - t < policy.failure_window_s) + (now,)
    if len(exits) >= policy.max_failures:
        return replace(base, state="failed", exits=exits, next_start_at=None)
    fresh = ran >= policy.stable_after_s or s.next_backoff_s <= 0
    delay = policy.initial_backoff_s if fresh else s.next_backoff_s
    return replace(base, state="restarting", exits=exits, next_start_at=now + delay,
                   next_backoff_s=min(delay * 2, policy.max_backoff_s))


def start_failed(s: ServiceState, now: float, policy: RestartPolicy, error: str) -> ServiceState:
    """The process could not even be spawned: counts as an exit right at start."""
    attempt = replace(s, state="running", started_at=now, restart_requested=False)
    return exited(attempt, now, policy, None, error)


def due(s: ServiceState, now: float) -> bool:
    """True when a restarting service's delay is over."""
    return s.state == "restarting" and s.next_start_at is not None and now >= s.next_start_at


def retry(s: ServiceState, now: float) -> ServiceState:
    """Someone asked for the service (``stack up``, ``stack restart``): forget its failures.

    A running one is flagged so that, once the supervisor has stopped it, it starts at once.
    """
    cleared = replace(s, exits=(), next_backoff_s=0.0)
    if s.state == "running":
        return replace(cleared, restart_requested=True)
    return replace(cleared, state="restarting", next_start_at=now)


def stopped(s: ServiceState) -> ServiceState:
    """The service is not wanted any more (``stack down``, removed from the plan)."""
    return replace(s, state="stopped", pid=None, next_start_at=None, restart_requested=False)


def delay_left(s: ServiceState, now: float) -> float | None:
    """Seconds until a restarting service is started again, for status and logs."""
    if s.state != "restarting" or s.next_start_at is None:
        return None
    return max(0.0, s.next_start_at - now)
