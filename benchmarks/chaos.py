"""``python -m benchmarks.chaos``: faults under steady traffic, then the count against the truth.

Starts its own stack (Kafka, PostgreSQL, every service under the supervisor) in a temp
folder on free ports, sends seeded loadgen traffic straight to the gateway (1 % duplicate
batches, 2 % late events) in one phase per fault, each phase in a project of its own, and
at a seeded moment of each phase injects its fault. After the run drains it runs billing
for the day(s) and compares every project's billing, ``metrics_1m`` and ``late_events``
with its ground truth. Per fault: time to recover, events delayed, lost, double-counted,
alerts sent twice, manual steps. Writes ``benchmarks/results/chaos.json``; stops
everything it started. ``--quick``: five faults in about three minutes (the test's run).
Issue 11's rollup job is TimescaleDB's aggregate policies now, inside PostgreSQL: the
PostgreSQL stop is its fault.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import chaos_faults as faults
from benchmarks.chaos_check import (
    billing_counts,
    compare,
    compare_flat,
    dead_letters,
    drain,
    lost_and_double,
)
from benchmarks.chaos_inputs import WebhookReceiver, send_hostile, write_unstorable
from benchmarks.chaos_report import double, lost, table
from benchmarks.chaos_stack import CLI, ChaosStack
from benchmarks.chaos_traffic import Phase, make_phase
from schemas import keystore
from schemas.keys import KeyKind

RESULTS = Path(__file__).parent / "results" / "chaos.json"
FULL = ("gateway-kill9", "speed-kill9", "lake-kill9", "billing-kill9", "alerting-kill9",
        "kafka-stop", "postgres-stop", "hostile-events", "unstorable-records")
# A consumer the unstorable records break stays broken: that fault comes last, so the
# others are measured on a healthy pipeline.
QUICK = ("speed-kill9", "lake-kill9", "hostile-events", "postgres-stop", "unstorable-records")
SERVICE_OF = {"gateway-kill9": "gateway", "speed-kill9": "speed", "lake-kill9": "lake",
              "alerting-kill9": "alerting"}
# Faults during which the speed layer or the lake writer cannot take events in.
STOPS_CONSUMERS = frozenset({"speed-kill9", "lake-kill9", "kafka-stop", "postgres-stop"})
SERVICE_ENV = {  # short timers so a few minutes show rolls, emits and rule rounds
    "TURNSTILE_BATCH_ROLL_SECONDS": "3",
    "TURNSTILE_SPEED_EMIT_INTERVAL_S": "1",
    "TURNSTILE_SPEED_SNAPSHOT_INTERVAL_S": "2",
    "TURNSTILE_ALERTING_INTERVAL_S": "3",
    "TURNSTILE_ALERTING_ALLOWED_TARGET_PREFIXES": '["http://127.0.0.1:"]',
}


@dataclass(frozen=True)
class Options:
    faults: tuple[str, ...]
    seed: int
    rate: float  # events/s of the steady traffic
    phase_s: float  # traffic per phase besides the outage itself
    outage_s: float
    recover_timeout_s: float
    keep: bool


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="five faults, ~3 minutes")
    parser.add_argument("--faults", help=f"comma-separated subset of {','.join(FULL)}")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--rate", type=float, default=300.0, help="events/s sent")
    parser.add_argument("--phase-seconds", type=float, help="traffic per fault (default 30,"
                        " quick 18)")
    parser.add_argument("--outage-seconds", type=float,
                        help="Kafka / PostgreSQL stopped this long (default 60, quick 20)")
    parser.add_argument("--recover-timeout", type=float, default=90.0,
                        help="seconds to wait for recovery before a manual step")
    parser.add_argument("--keep", action="store_true", help="keep the state folder")
    a = parser.parse_args(argv)
    chosen = tuple(a.faults.split(",")) if a.faults else (QUICK if a.quick else FULL)
    unknown = [f for f in chosen if f not in FULL]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; known: {', '.join(FULL)}")
    return Options(chosen, a.seed, a.rate, a.phase_seconds or (18.0 if a.quick else 30.0),
                   a.outage_seconds or (20.0 if a.quick else 60.0), a.recover_timeout, a.keep)


class Run:
    """One chaos run: the stack, the phases, the fault results."""

    def __init__(self, opts: Options, stack: ChaosStack) -> None:
        self.opts = opts
        self.stack = stack
        self.rng = random.Random(opts.seed)
        self.tag = uuid.uuid4().hex[:6]
        self.rows: list[dict[str, Any]] = []
        self.checks: list[tuple[dict[str, Any], str, Any]] = []  # (row, project, truth|n)
        self.next_start_us = 0
        self.receiver: WebhookReceiver | None = None

    def project(self, name: str) -> tuple[str, str]:
        project = f"chaos-{self.tag}-{name}"
        with self.stack.connect() as conn:
            keystore.create_project(conn, project)
            key = keystore.create_key(conn, project, KeyKind.WRITE, "chaos").secret
        return project, key

    def phase(self, i: int, name: str, seconds: float) -> Phase:
        project, key = self.project(name)
        start = max(int(time.time() - 60) * 1_000_000, self.next_start_us)
        phase = make_phase(project, key, self.stack.gateway_url, seed=self.opts.seed + i,
                           seconds=seconds, rate=self.opts.rate, start_us=start,
                           run_id=f"c{self.tag}{i}",
                           max_retry_s=self.opts.outage_s + self.opts.recover_timeout_s + 60)
        self.next_start_us = phase.last_timestamp_us + 1_000_000
        return phase

    def accepted_since(self, phase: Phase) -> Any:
        return lambda t: any(b.accepted > t for b in list(phase.sender.timings))

    def run_fault(self, i: int, name: str) -> None:
        o = self.opts
        outage = o.outage_s if name in ("kafka-stop", "postgres-stop") else 0.0
        phase = self.phase(i, name, o.phase_s + outage)
        row: dict[str, Any] = {"fault": name, "project": phase.project}
        ready_before = {n: r.health == "ready" for n, r in self.stack.status().items()
                        if r.component not in ("kafka", "postgres", "supervisor")}
        rule_id = self.alert_rule(phase.project) if name == "alerting-kill9" else None
        at = self.rng.uniform(0.25, 0.45) * o.phase_s
        row["inject_at_s"] = round(at, 1)
        phase.start()
        time.sleep(at)
        result = self.inject(name, phase, ready_before, rule_id)
        phase.join(timeout=o.phase_s + outage + o.recover_timeout_s + 120)
        if phase.error:
            result.notes.append(f"loadgen: {phase.error}")
        until = result.recovered_at or time.monotonic()
        row.update(recover_s=None if result.recover_s is None else round(result.recover_s, 1),
                   events_delayed=phase.events_delayed(
                       result.injected_at, until,
                       name in STOPS_CONSUMERS or result.recovered_at is None),
                   manual_steps=result.manual_steps, notes=result.notes,
                   retries=phase.report.retries if phase.report else None, **result.extra)
        if rule_id is not None and self.receiver is not None:
            time.sleep(2 * float(SERVICE_ENV["TURNSTILE_ALERTING_INTERVAL_S"]))
            row["alert_notifications"], row["alerts_sent_twice"] = \
                self.receiver.sent_twice(rule_id)
            row["alert_repeats_of_one_notice"] = self.receiver.same_notice_twice(rule_id)
            row["alert_calls"] = [{k: c.get(k) for k in ("rule_id", "kind", "at", "_received")}
                                  for c in self.receiver.calls]
        self.rows.append(row)
        self.checks.append((row, phase.project, phase.truth))

    def alert_rule(self, project: str) -> int:
        """A rule that fires as soon as the project has traffic and stays firing."""
        self.receiver = WebhookReceiver(hold_first_s=3.0)
        rows = self.stack.query(
            "INSERT INTO alert_rules (project_id, name, metric, comparator, threshold,"
            " window_minutes, min_requests, cooldown_minutes, channel, target)"
            " VALUES (%s, 'chaos: any traffic', 'request_count', '>', 0, 5, 0, 60, 'webhook',"
            " %s) RETURNING rule_id", (project, self.receiver.url))
        return int(rows[0][0])

    def inject(self, name: str, phase: Phase, ready_before: dict[str, bool],
               rule_id: int | None) -> faults.FaultResult:
        o, stack = self.opts, self.stack
        accepted = self.accepted_since(phase)
        if name == "alerting-kill9":  # kill it while it delivers (the receiver holds on)
            if self.receiver is None:
                raise RuntimeError("no webhook receiver for the alert rule")
            if not self.receiver.first_call.wait(o.recover_timeout_s):
                r = faults.kill_service(stack, "alerting", phase.project, o.recover_timeout_s,
                                        accepted)
                r.notes.append("the rule had not fired before the kill")
                return r
            time.sleep(0.5)
        if name in SERVICE_OF:
            return faults.kill_service(stack, SERVICE_OF[name], phase.project,
                                       o.recover_timeout_s, accepted)
        if name in ("kafka-stop", "postgres-stop"):
            return faults.outage(stack, name.split("-")[0], o.outage_s, phase.project,
                                 o.recover_timeout_s, ready_before, accepted)
        if name == "billing-kill9":
            self.wait_lake()
            r = faults.billing_kill(stack, datetime.now(UTC).date().isoformat(),
                                    self.rng.uniform(0.0, 0.1), o.recover_timeout_s * 2)
            self.billed_after_rerun(r)
            return r
        if name == "hostile-events":
            return self.hostile(phase)
        return self.unstorable(phase)

    def hostile(self, phase: Phase) -> faults.FaultResult:
        project, key = self.project("hostile-good")
        result = faults.FaultResult(time.monotonic())
        answers = send_hostile(self.stack.gateway_url, key, f"h{self.tag}",
                               phase.traffic.spec.start_us / 1e6)
        bad = [a for a in answers if not a["ok"]]
        result.notes += [f"{a['class']}: HTTP {a['status']} {a.get('detail', '')[:120]}"
                         for a in bad]
        result.extra["hostile_requests"] = len(answers)
        result.extra["hostile_answers"] = {a["class"]: a["status"] for a in answers}
        # Lost counts what was accepted (202); good events refused with their batch are noted.
        self.checks.append(({}, project, sum(a.get("accepted") or 0 for a in answers)))
        result.extra["good_events_refused_with_their_batch"] = sum(
            a["good_events"] - (a.get("accepted") or 0) for a in answers)
        faults.wait_recovered(self.stack, result, lambda: faults.services_up(
            self.stack, {"gateway": True}) and self.accepted_since(phase)(result.injected_at),
            self.opts.recover_timeout_s, "gateway ready and accepting")
        return result

    def unstorable(self, phase: Phase) -> faults.FaultResult:
        project, _ = self.project("poison")
        before = faults.metrics_total(self.stack, phase.project)
        lake_before = self.stack.lake_committed()[0]
        result = faults.FaultResult(time.monotonic())
        result.extra["unstorable_records"] = write_unstorable(
            self.stack.bootstrap, project, f"p{self.tag}", phase.traffic.spec.start_us)
        result.extra["poison_project"] = project
        written = result.injected_at

        def flowing() -> bool:
            return (faults.services_up(self.stack, {"speed": True, "lake": True})
                    and faults.metrics_total(self.stack, phase.project) > before
                    and self.stack.lake_committed()[0] > lake_before
                    and self.accepted_since(phase)(written))

        faults.wait_recovered(self.stack, result, flowing, self.opts.recover_timeout_s,
                              "speed layer and lake writer running and counting")
        return result

    def billed_after_rerun(self, r: faults.FaultResult) -> None:
        """After the killed run and its re-run: the finished phases billed exactly."""
        lost_n = double_n = 0
        for _, project, truth in self.checks:
            if truth is not None and not isinstance(truth, int):
                want = {k: n for k, n in truth.requests_per_key_day().items()
                        if k[2] == datetime.now(UTC).date().isoformat()}
                a, b = lost_and_double(want, billing_counts(self.stack, project))
                lost_n, double_n = lost_n + a, double_n + b
        r.extra.update(rerun_billing_lost=lost_n, rerun_billing_double=double_n)

    def wait_lake(self) -> None:
        drain(self.stack, [r["project"] for r in self.rows], timeout=30, settle_s=2)

    def finish(self) -> dict[str, Any]:
        """Drain, bill the day(s), compare each project with its truth."""
        projects = [r["project"] for r in self.rows]
        drained = drain(self.stack, projects, timeout=120)
        days = sorted({d for _, _, t in self.checks if t is not None and not isinstance(t, int)
                       for (_, _, d) in t.requests_per_key_day()})
        billing = []
        for day in days or [datetime.now(UTC).date().isoformat()]:
            done = subprocess.run([*CLI, "billing", "run", "--date", day],
                                  env=self.stack.job_env(), capture_output=True, text=True,
                                  timeout=300, check=False)
            billing.append({"day": day, "rc": done.returncode,
                            "output": done.stdout.strip()[-400:]})
        for row, project, truth in self.checks:
            if truth is None:
                row.update(billing_lost=None, notes=[*row.get("notes", []), "no truth: the"
                                                     " sender did not finish"])
                continue
            if isinstance(truth, int):  # the good events beside hostile ones
                counts = compare_flat(self.stack, project, truth)
                target = next(r for r in self.rows if r["fault"] == "hostile-events")
                target["hostile_good_events"] = counts
                for k in ("billing_lost", "billing_double", "stream_lost", "stream_double"):
                    target[k] = target.get(k, 0) + counts[k]
                continue
            row.update({k: row.get(k, 0) + v if k != "events" else v
                        for k, v in compare(self.stack, project, truth).items()})
        return {"drain": drained, "billing_runs": billing,
                "dead_letters_by_component": dict(dead_letters(self.stack))}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts = parse(args)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` and CI timeouts still stop the stack
    state = Path(tempfile.mkdtemp(prefix="turnstile-chaos-"))
    state.chmod(0o755)  # PostgreSQL runs as its own user and must enter the folder
    stack = ChaosStack.on_free_ports(state)
    started = time.monotonic()
    run = Run(opts, stack)
    summary: dict[str, Any] = {}
    try:
        summary["stack_up_s"] = round(stack.up(SERVICE_ENV), 1)
        for i, name in enumerate(opts.faults):
            print(f"chaos: {name} ...", flush=True)  # noqa: T201 - progress of a long run
            run.run_fault(i, name)
        summary.update(run.finish())
    finally:
        if run.receiver is not None:
            run.receiver.close()
        stack.down()
        logs = state / "logs"
        if logs.exists():  # the services' logs outlive the state folder, for the findings
            kept = Path(tempfile.gettempdir()) / f"turnstile-chaos-logs-{run.tag}"
            shutil.copytree(logs, kept, dirs_exist_ok=True)
            summary["logs"] = str(kept)
        if not opts.keep:
            shutil.rmtree(state, ignore_errors=True)
    for row in run.rows:
        row["lost"], row["double_counted"] = lost(row), double(row)
        row.setdefault("alerts_sent_twice", 0)
    result = {
        "benchmark": "chaos",
        "command": "python -m benchmarks.chaos " + " ".join(args),
        "seed": opts.seed,
        "machine": {"cores": os.cpu_count(), "memory_gib": round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version()},
        "options": {"rate_events_per_s": opts.rate, "phase_seconds": opts.phase_s,
                    "outage_seconds": opts.outage_s,
                    "recover_timeout_seconds": opts.recover_timeout_s},
        "faults": run.rows,
        **summary,
        "seconds": round(time.monotonic() - started, 1),
    }
    out = Path(os.environ.get("TURNSTILE_CHAOS_RESULTS", RESULTS))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(run.rows))  # noqa: T201 - the benchmark's table
    print(f"chaos: {result['seconds']} s; results in {out}")  # noqa: T201
    bad = [r for r in run.rows if r["lost"] != 0 or r["double_counted"] != 0
           or r["manual_steps"] or r["recover_s"] is None or r["alerts_sent_twice"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
