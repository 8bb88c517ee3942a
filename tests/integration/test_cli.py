"""``turnstile stack`` and ``turnstile db`` as a user runs them, in a state folder of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from turnstile_cli.stack import KafkaBroker, LocalStack, PostgresServer, StackConfig, free_ports
from turnstile_cli.stack.process import pid_alive


def _turnstile(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnstile_cli.main", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.mark.slow
def test_stack_up_status_down_leaves_no_process_behind():
    state = Path(tempfile.mkdtemp(prefix="turnstile-cli-"))
    state.chmod(0o755)
    kafka_port, controller_port, postgres_port = free_ports(3)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TURNSTILE_KAFKA_BOOTSTRAP", "TURNSTILE_DATABASE_URL")}
    env.update({
        "TURNSTILE_STATE_DIR": str(state),
        "TURNSTILE_STACK_KAFKA_PORT": str(kafka_port),
        "TURNSTILE_STACK_KAFKA_CONTROLLER_PORT": str(controller_port),
        "TURNSTILE_STACK_POSTGRES_PORT": str(postgres_port),
    })
    kafka = KafkaBroker(state, kafka_port, controller_port)
    postgres = PostgresServer(state, postgres_port)
    try:
        up = _turnstile("stack", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"127.0.0.1:{kafka_port}" in up.stdout
        pids = (kafka.pid, postgres.pid)
        assert None not in pids

        again = _turnstile("stack", "up", env=env)  # idempotent: same servers
        assert again.returncode == 0, again.stdout + again.stderr
        assert (kafka.pid, postgres.pid) == pids

        migrated = _turnstile("db", "migrate", "--database-url", postgres.database_url, env=env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        db_status = _turnstile("db", "status", "--database-url", postgres.database_url, env=env)
        assert db_status.returncode == 0 and "metrics_1m" in db_status.stdout

        status = _turnstile("stack", "status", env=env)
        assert status.returncode == 0, status.stdout
        assert all(str(pid) in status.stdout for pid in pids)

        down = _turnstile("stack", "down", env=env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not any(pid_alive(pid) for pid in pids if pid is not None)
        assert _turnstile("stack", "status", env=env).returncode == 1
    finally:
        LocalStack(StackConfig(state, kafka_port, controller_port, postgres_port)).down()
        shutil.rmtree(state, ignore_errors=True)


_OPS_SERVICES = ("speed", "lake", "billing", "alerting")


@pytest.mark.slow
def test_make_run_platform_serves_demo_traffic_end_to_end_and_down_stops_everything():
    """What `make run` does: servers, every service, demo traffic through the real agent.

    Then the supervisor's job: a gateway killed with SIGKILL is reported restarting, then
    running with one restart, and answers again; every /metrics endpoint is scraped.
    """
    import json
    import signal
    import time

    import httpx

    state = Path(tempfile.mkdtemp(prefix="turnstile-run-"))
    state.chmod(0o755)
    (kafka_port, controller_port, postgres_port, gateway_port, query_port,
     *ops_ports) = free_ports(9)
    ops = dict(zip(_OPS_SERVICES, ops_ports, strict=True))
    env = {k: v for k, v in os.environ.items()
           if k not in ("TURNSTILE_KAFKA_BOOTSTRAP", "TURNSTILE_DATABASE_URL")}
    env.update({
        "TURNSTILE_STATE_DIR": str(state),
        "TURNSTILE_STACK_KAFKA_PORT": str(kafka_port),
        "TURNSTILE_STACK_KAFKA_CONTROLLER_PORT": str(controller_port),
        "TURNSTILE_STACK_POSTGRES_PORT": str(postgres_port),
        "TURNSTILE_STACK_GATEWAY_PORT": str(gateway_port),
        "TURNSTILE_STACK_QUERY_PORT": str(query_port),
        **{f"TURNSTILE_STACK_{name.upper()}_OPS_PORT": str(port) for name, port in ops.items()},
        # Long enough for `stack status` (a fresh interpreter) to see the restarting state.
        "TURNSTILE_STACK_RESTART_BACKOFF": "5",
        "TURNSTILE_BATCH_ROLL_SECONDS": "5",
    })
    pids: list[int] = []

    def components() -> dict[str, dict]:
        shown = _turnstile("stack", "status", "--json", env=env)
        return {c["component"]: c for c in json.loads(shown.stdout)["components"]}

    try:
        up = _turnstile("stack", "up", "--services", "--demo-rate", "40", env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{query_port}/" in up.stdout
        pids = [int(p.read_text()) for p in (state / "pids").glob("*.pid")]
        names = {p.stem for p in (state / "pids").glob("*.pid")}
        assert names == {"supervisor", "gateway", "speed", "lake", "billing", "query",
                         "alerting", "demo"}
        demo = json.loads((state / "demo-keys.json").read_text())
        read_key = demo["read"]
        # The keys the README's examples need, each whole on its line (stdout is a pipe).
        lines = up.stdout.splitlines()
        assert any(f"demo admin key {demo['admin']}" in line for line in lines), up.stdout
        assert any(f"demo read key {read_key}" in line for line in lines), up.stdout
        assert any(line.startswith("agents     TURNSTILE_AGENT_CONSUMER_HASH_KEY=")
                   for line in lines), up.stdout

        # Events travel agent → gateway → Kafka → speed layer → PostgreSQL → query API.
        deadline = time.monotonic() + 120
        requests = 0
        while time.monotonic() < deadline and requests < 200:
            time.sleep(2)
            answer = httpx.get(f"http://127.0.0.1:{query_port}/api/v1/analytics/realtime",
                               params={"window": "5m"},
                               headers={"Authorization": f"Bearer {read_key}"}, timeout=10)
            assert answer.status_code == 200, answer.text
            requests = answer.json()["totals"]["requests"]
        assert requests >= 200, f"only {requests} requests visible after 120 s"
        endpoints = {e["endpoint"] for e in answer.json()["top_endpoints"]}
        assert "/v1/products/{product_id}" in endpoints  # route templates from the agent

        # ... and the lake writer archives them.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((state / "lake").rglob("*.parquet")):
            time.sleep(1)
        assert list((state / "lake").glob("dt=*/project=demo/*.parquet"))

        status = _turnstile("stack", "status", env=env)
        assert status.returncode == 0, status.stdout
        rows = components()
        assert set(rows) == {"kafka", "postgres", "supervisor", "gateway", "speed", "lake",
                             "billing", "query", "alerting", "demo"}
        assert all(row["state"] == "running" for row in rows.values()), rows
        assert rows["gateway"]["health"] == "ready"

        # Every /metrics there is, scraped.
        metrics = httpx.get(f"http://127.0.0.1:{gateway_port}/metrics", timeout=10)
        assert metrics.status_code == 200 and "turnstile_gateway_events_accepted" in metrics.text
        scraped = [f"http://127.0.0.1:{query_port}/metrics",
                   *(f"http://127.0.0.1:{port}/metrics" for port in ops.values())]
        for url in scraped:
            answer = httpx.get(url, timeout=10)
            assert answer.status_code == 200 and "# TYPE" in answer.text, url
        assert all(rows[name]["health"] == "ready" for name in (*ops, "query")), rows

        # kill -9 the gateway: the supervisor restarts it, status shows both states.
        gateway_pid = rows["gateway"]["pid"]
        os.kill(gateway_pid, signal.SIGKILL)
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            gateway = components()["gateway"]
            seen.append(gateway["state"])
            if gateway["state"] == "running" and gateway["pid"] != gateway_pid:
                break
        assert "restarting" in seen, seen
        assert gateway["state"] == "running" and gateway["restarts"] == 1, gateway
        pids.append(gateway["pid"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and components()["gateway"]["health"] != "ready":
            time.sleep(1)
        assert components()["gateway"]["health"] == "ready"
        assert _turnstile("stack", "status", env=env).returncode == 0
    finally:
        down = _turnstile("stack", "down", env=env, timeout=180)
        leftover = [pid for pid in pids if pid_alive(pid)]
        LocalStack(StackConfig(state, kafka_port, controller_port, postgres_port)).down()
        shutil.rmtree(state, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftover == []


def test_keys_create_prints_the_agents_environment_and_list_is_never_cut(stack, stack_env):
    import json
    import uuid

    from typer.testing import CliRunner

    from schemas.ingest_wire import CONSUMER_HASH_KEY_ENV
    from turnstile_cli.main import app

    runner = CliRunner()
    project = f"cli-{uuid.uuid4().hex[:8]}"
    created = runner.invoke(app, ["keys", "create", "-p", project, "--kind", "write"])
    assert created.exit_code == 0, created.output
    hash_key = runner.invoke(app, ["keys", "hash-key", "-p", project]).stdout.strip()
    assert len(hash_key) == 64 and int(hash_key, 16) >= 0
    assert f"{CONSUMER_HASH_KEY_ENV}={hash_key}" in created.stdout
    other = f"cli-{uuid.uuid4().hex[:8]}"
    runner.invoke(app, ["keys", "create", "-p", other, "--kind", "read"])
    other_key = runner.invoke(app, ["keys", "hash-key", "-p", other]).stdout.strip()
    assert other_key != hash_key  # one per project
    assert runner.invoke(app, ["keys", "hash-key", "-p", "no-such-project"]).exit_code == 1

    made = json.loads(runner.invoke(app, ["keys", "create", "-p", project, "--kind", "read",
                                          "--name", "a rather long name for a wall screen",
                                          "--json"]).stdout)
    listed = runner.invoke(app, ["keys", "list", "-p", project])
    assert listed.exit_code == 0
    as_json = json.loads(runner.invoke(app, ["keys", "list", "-p", project, "--json"]).stdout)
    assert made["key_id"] in {k["key_id"] for k in as_json}
    # Piped: every key id and name whole; the only "…" is the one after each prefix.
    assert all(k["key_id"] in listed.stdout and f"{k['prefix']}…" in listed.stdout
               for k in as_json)
    assert listed.stdout.count("…") == len(as_json) == 2
    assert "a rather long name for a wall screen" in listed.stdout
    revoked = runner.invoke(app, ["keys", "revoke", "-p", project, made["key_id"]])
    assert revoked.exit_code == 0, revoked.output


def test_map_customer_takes_the_raw_consumer_id_and_explains_the_hashed_one(stack, stack_env,
                                                                             db):
    import uuid

    from typer.testing import CliRunner

    from schemas.ingest_wire import hash_consumer_id
    from turnstile_cli.main import app

    runner = CliRunner()
    project = f"map-{uuid.uuid4().hex[:8]}"
    runner.invoke(app, ["keys", "create", "-p", project, "--kind", "write"])
    key = runner.invoke(app, ["keys", "hash-key", "-p", project]).stdout.strip()
    raw = runner.invoke(app, ["billing", "map-customer", project, "cust-42", "cus_A", "--raw"])
    assert raw.exit_code == 0, raw.output
    hashed = hash_consumer_id("cust-42", key)
    assert hashed in raw.stdout
    assert db.execute("SELECT stripe_customer_id FROM stripe_customers WHERE project_id = %s"
                      " AND api_key = %s", (project, hashed)).fetchone() == ("cus_A",)
    plain = runner.invoke(app, ["billing", "map-customer", project, "cust-43", "cus_B"])
    assert plain.exit_code == 0
    assert "--raw" in plain.stdout and "no billed day" in plain.stdout
