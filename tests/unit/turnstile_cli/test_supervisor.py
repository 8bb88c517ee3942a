"""The supervisor's rounds over fake processes and a fake clock: no sleeps, no real children."""

from pathlib import Path

import pytest

from turnstile_cli.stack.plan import ServicePlan, load_plan, save_plan
from turnstile_cli.stack.restart_policy import RestartPolicy
from turnstile_cli.stack.services import Service, ServicePorts, platform_services
from turnstile_cli.stack.supervisor import Supervisor
from turnstile_cli.stack.supervisor_state import (
    RELOAD,
    load_view,
    request,
    restart_request,
    take_requests,
)

pytestmark = pytest.mark.unit


class FakeChild:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


class FakeProcesses:
    """Spawns FakeChild objects; ``pid()`` (adoption) finds nothing unless told."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[FakeChild] = []
        self.running: dict[str, int] = {}
        self.signals: list[tuple[int, int]] = []

    def signal(self, pid: int, sig) -> None:
        self.signals.append((pid, int(sig)))

    def kill_group(self, pid: int) -> None:
        self.signals.append((pid, 9))

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, service: Service) -> int | None:
        return self.running.get(service.name)

    def runs(self, service: Service, pid: int) -> bool:
        return self.running.get(service.name) == pid

    def spawn(self, service: Service) -> FakeChild:
        child = FakeChild(1000 + len(self.children))
        self.children.append(child)
        return child


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path):
    plan = ServicePlan((Service("a", ("a",)), Service("b", ("b",))),
                       RestartPolicy(initial_backoff_s=1.0, max_failures=3))
    save_plan(tmp_path, plan)
    clock, processes = Clock(), FakeProcesses(tmp_path)
    supervisor = Supervisor(tmp_path, plan, processes, clock=clock)
    return supervisor, processes, clock, processes.signals


def _states(path):
    view = load_view(path)
    return {name: (s.state, s.pid, s.restarts) for name, s in view.services.items()}


def test_an_exited_service_is_restarting_then_running_with_one_restart(setup, tmp_path):
    supervisor, processes, clock, _ = setup
    supervisor.adopt_or_start()
    supervisor.tick()
    assert _states(tmp_path) == {"a": ("running", 1000, 0), "b": ("running", 1001, 0)}
    (tmp_path / "a.log").write_text("INFO fine\nRuntimeError: the database went away\n")
    processes.children[0].code = -9
    clock.now += 5
    supervisor.tick()
    view = load_view(tmp_path)
    assert (view.services["a"].state, view.services["a"].last_exit_code) == ("restarting", -9)
    assert view.services["a"].last_error == "RuntimeError: the database went away"
    clock.now += 0.9
    supervisor.tick()
    assert _states(tmp_path)["a"] == ("restarting", None, 0)
    clock.now += 0.1
    supervisor.tick()
    assert _states(tmp_path) == {"a": ("running", 1002, 1), "b": ("running", 1001, 0)}


def test_a_service_that_always_exits_ends_failed_and_stays_so(setup, tmp_path):
    supervisor, processes, clock, _ = setup
    supervisor.adopt_or_start()
    for _ in range(3):
        processes.children[-1 if processes.children[-1].pid != 1001 else 0].code = 1
        supervisor.tick()
        clock.now += 10
        supervisor.tick()
    assert _states(tmp_path)["a"][0] == "failed"
    spawned = len(processes.children)
    clock.now += 3600
    supervisor.tick()
    assert len(processes.children) == spawned
    assert _states(tmp_path)["b"][0] == "running"


def test_restart_request_stops_a_running_service_and_starts_it_at_once(setup, tmp_path):
    supervisor, processes, clock, signals = setup
    supervisor.adopt_or_start()
    request(tmp_path, restart_request("b"))
    supervisor.tick()
    assert signals[-1] == (1001, 15)
    processes.children[1].code = -15
    supervisor.tick()  # exit seen: due now
    supervisor.tick()
    assert _states(tmp_path)["b"] == ("running", 1002, 1)
    assert load_view(tmp_path).services["b"].exits == ()


def test_a_new_supervisor_adopts_running_services_and_starts_the_rest(setup, tmp_path):
    supervisor, processes, clock, _ = setup
    supervisor.adopt_or_start()
    supervisor.tick()
    processes.running = {"a": 1000}  # b died while no supervisor watched
    successor = Supervisor(tmp_path, supervisor.plan, processes, clock=clock)
    successor.adopt_or_start()
    successor.tick()
    assert _states(tmp_path) == {"a": ("running", 1000, 0), "b": ("running", 1002, 1)}
    assert len(processes.children) == 3


def test_reload_takes_the_new_plan_and_revives_failed_services(setup, tmp_path):
    supervisor, processes, clock, signals = setup
    supervisor.adopt_or_start()
    for _ in range(3):
        processes.children[0 if len(processes.children) == 2 else -1].code = 1
        supervisor.tick()
        clock.now += 10
        supervisor.tick()
    assert _states(tmp_path)["a"][0] == "failed"
    save_plan(tmp_path, ServicePlan((Service("a", ("a",)), Service("c", ("c",))),
                                    supervisor.plan.policy))
    request(tmp_path, RELOAD)
    supervisor.tick()
    supervisor.tick()
    states = _states(tmp_path)
    assert set(states) == {"a", "c"}
    assert states["a"][0] == "running" and states["c"] == ("running", states["c"][1], 0)
    assert (1001, 15) in signals  # b is no longer planned


def test_reload_of_an_unchanged_plan_still_writes_a_fresh_view(setup, tmp_path):
    supervisor, processes, clock, _ = setup
    supervisor.adopt_or_start()
    supervisor.tick()
    clock.now += 30
    request(tmp_path, RELOAD)
    supervisor.tick()
    assert load_view(tmp_path).updated_at == clock.now  # what `stack up` waits for
    assert len(processes.children) == 2  # nothing restarted


def test_requests_are_consumed_once(tmp_path):
    request(tmp_path, RELOAD)
    request(tmp_path, restart_request("speed"))
    assert take_requests(tmp_path) == (True, ["speed"])
    assert take_requests(tmp_path) == (False, [])


def test_platform_plan_round_trips_with_ops_ports_and_without_rollups(tmp_path):
    ports = ServicePorts(18080, 18090, 19101, 19102, 19103, 19104)
    services = platform_services(tmp_path, demo_rate=5.0, ports=ports)
    save_plan(tmp_path, ServicePlan(tuple(services), RestartPolicy(initial_backoff_s=2.0), ports))
    plan = load_plan(tmp_path)
    assert plan.services == tuple(services) and plan.ports == ports
    assert plan.policy.initial_backoff_s == 2.0
    by_name = {s.name: s for s in plan.services}
    assert list(by_name) == ["gateway", "speed", "lake", "billing", "query", "alerting", "demo"]
    assert by_name["speed"].env["TURNSTILE_SPEED_OPS_PORT"] == "19101"
    assert by_name["lake"].env["TURNSTILE_BATCH_OPS_PORT"] == "19102"
    assert by_name["billing"].env["TURNSTILE_BATCH_OPS_PORT"] == "19103"
    assert by_name["alerting"].env["TURNSTILE_ALERTING_OPS_PORT"] == "19104"
    assert by_name["speed"].ready_url == "http://127.0.0.1:19101/readyz"
    assert by_name["gateway"].live_url == "http://127.0.0.1:18080/healthz"
    assert by_name["query"].ready_url == "http://127.0.0.1:18090/readyz"
