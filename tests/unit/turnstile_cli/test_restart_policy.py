"""The restart policy as pure transitions: exponential backoff, reset, failed, retry."""

import pytest

from turnstile_cli.stack import restart_policy as rp
from turnstile_cli.stack.restart_policy import RestartPolicy, ServiceState

pytestmark = pytest.mark.unit

POLICY = RestartPolicy(initial_backoff_s=1.0, max_backoff_s=60.0, stable_after_s=60.0,
                       failure_window_s=300.0, max_failures=5)


def _crash_loop(state: ServiceState, now: float, times: int, run_s: float = 0.5):
    """Start, run ``run_s``, exit, wait out the delay; returns (state, now, delays)."""
    delays = []
    for _ in range(times):
        state = rp.started(state, 100, now)
        now += run_s
        state = rp.exited(state, now, POLICY, exit_code=1)
        if state.state != "restarting":
            break
        delays.append(state.next_start_at - now)
        now = state.next_start_at
    return state, now, delays


def test_first_start_is_not_a_restart_and_a_restart_out_of_restarting_is():
    state = rp.started(ServiceState("gateway"), 10, now=1000.0)
    assert (state.state, state.pid, state.restarts, state.started_at) == ("running", 10, 0, 1000.0)
    state = rp.exited(state, 1010.0, POLICY, exit_code=-9, last_error="boom")
    assert (state.state, state.pid, state.last_exit_code) == ("restarting", None, -9)
    assert state.last_error == "boom"
    assert not rp.due(state, 1010.5)
    assert rp.delay_left(state, 1010.5) == pytest.approx(0.5)
    assert rp.due(state, 1011.0)
    state = rp.started(state, 11, 1011.0)
    assert (state.state, state.restarts) == ("running", 1)


def test_delay_doubles_from_one_second_and_is_capped():
    policy = RestartPolicy(max_failures=100, failure_window_s=1.0)  # never fails here
    state, now, delays = ServiceState("speed"), 0.0, []
    for _ in range(9):
        state = rp.exited(rp.started(state, 1, now), now + 0.1, policy, 1)
        delays.append(state.next_start_at - (now + 0.1))
        now = state.next_start_at
    assert delays == pytest.approx([1, 2, 4, 8, 16, 32, 60, 60, 60])


def test_a_run_longer_than_stable_after_resets_the_delay():
    state, now, delays = _crash_loop(ServiceState("lake"), 0.0, 3)
    assert delays == [1, 2, 4]
    state = rp.started(state, 5, now)
    state = rp.exited(state, now + 61.0, POLICY, 1)  # ran more than stable_after_s
    assert state.next_start_at - (now + 61.0) == 1.0


def test_five_exits_within_five_minutes_mark_it_failed_and_it_is_not_due_any_more():
    state, now, delays = _crash_loop(ServiceState("billing"), 0.0, 5)
    assert delays == [1, 2, 4, 8]
    assert state.state == "failed"
    assert len(state.exits) == 5
    assert not rp.due(state, now + 10_000)
    assert rp.delay_left(state, now) is None


def test_exits_spread_wider_than_the_window_never_fail():
    state, now = ServiceState("alerting"), 0.0
    for _ in range(20):
        state = rp.started(state, 1, now)
        now += 100.0  # one exit per 100 s: at most 3 in any 300 s window
        state = rp.exited(state, now, POLICY, 1)
        assert state.state == "restarting"
        now = state.next_start_at
    assert state.restarts == 19


def test_retry_revives_a_failed_service_at_once_with_a_clean_slate():
    state, now, _ = _crash_loop(ServiceState("query"), 0.0, 5)
    assert state.state == "failed"
    state = rp.retry(state, now + 5)
    assert state.state == "restarting" and rp.due(state, now + 5)
    assert state.exits == () and state.next_backoff_s == 0.0
    state = rp.exited(rp.started(state, 9, now + 5), now + 6, POLICY, 1)
    assert state.next_start_at == now + 7  # the initial delay again


def test_retry_of_a_running_service_restarts_it_at_once_without_penalty():
    state = rp.started(ServiceState("gateway"), 10, 0.0)
    state = rp.retry(state, 50.0)
    assert state.state == "running" and state.restart_requested
    state = rp.exited(state, 51.0, POLICY, exit_code=-15)
    assert state.state == "restarting" and state.next_start_at == 51.0
    assert state.exits == () and not state.restart_requested
    assert rp.started(state, 11, 51.0).restarts == 1


def test_adopted_process_keeps_its_history_and_start_time():
    before = ServiceState("speed", state="running", pid=5, restarts=3, started_at=10.0)
    state = rp.adopted(before, 5, started_at=12.5)
    assert (state.state, state.pid, state.restarts, state.started_at) == ("running", 5, 3, 12.5)


def test_a_spawn_that_fails_counts_as_an_exit():
    state = rp.start_failed(ServiceState("demo"), 0.0, POLICY, "could not start: ENOENT")
    assert state.state == "restarting" and state.last_error == "could not start: ENOENT"
    assert len(state.exits) == 1


def test_stopped_forgets_the_process():
    state = rp.stopped(rp.started(ServiceState("lake"), 3, 0.0))
    assert (state.state, state.pid, state.next_start_at) == ("stopped", None, None)


@pytest.mark.parametrize("bad", [
    {"initial_backoff_s": 0}, {"max_backoff_s": -1}, {"max_failures": 0},
    {"initial_backoff_s": 10, "max_backoff_s": 5},
])
def test_a_nonsensical_policy_is_refused_naming_the_field(bad):
    with pytest.raises(ValueError, match="restart policy"):
        RestartPolicy(**bad)
