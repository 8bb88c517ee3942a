"""Agent overhead per request: ``python -m benchmarks.agent_overhead``.

A tiny ASGI app (200, 2-byte body) is called directly, in the same process and the same run,
without and with ``TurnstileASGI``; the sender is running, flushing real gzip'd batches over
HTTP to a stub gateway in a separate process (so its serialisation and network work compete
with the measured requests as they would in production). Each request is timed on its own
with ``perf_counter_ns``; the figure is the difference of the medians, median over RUNS
interleaved runs. Budget: < 25 µs.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agent.asgi import TurnstileASGI
from agent.sender import Sender
from agent.settings import AgentSettings

REQUESTS_PER_RUN = 50_000
RUNS = 5
BUDGET_US = 25.0
RESULTS = Path(__file__).resolve().parent / "results" / "agent_overhead.json"


def _stub_gateway(port_out) -> None:  # pragma: no cover - runs in a child process
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"accepted":0,"rejected":[]}'
            self.send_response(202)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


async def tiny_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


SCOPE = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
    "scheme": "http", "path": "/users/42", "raw_path": b"/users/42", "query_string": b"",
    "root_path": "", "client": ("203.0.113.9", 50000), "server": ("api", 80),
    "headers": [(b"host", b"api"), (b"user-agent", b"bench/1"), (b"accept", b"*/*"),
                (b"x-api-key", b"customer-secret-1")],
}


async def _receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message) -> None:
    pass


async def measure(app, n: int) -> list[int]:
    timings = []
    clock = time.perf_counter_ns
    for _ in range(n):
        scope = dict(SCOPE)
        t0 = clock()
        await app(scope, _receive, _send)
        timings.append(clock() - t0)
    return timings


def main() -> None:
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    stub = ctx.Process(target=_stub_gateway, args=(ports,), daemon=True)
    stub.start()
    port = ports.get(timeout=10)
    sender = Sender(AgentSettings(url=f"http://127.0.0.1:{port}", write_key="tsk_w_bench",
                                  consumer_hash_key="bench-hash-key",
                                  max_queue_events=1_000_000))
    wrapped = TurnstileASGI(tiny_app, sender)
    try:
        asyncio.run(measure(wrapped, 5_000))  # warm up both paths
        asyncio.run(measure(tiny_app, 5_000))
        runs: list[tuple[float, float]] = []
        means: list[float] = []
        for _ in range(RUNS):
            base_t = asyncio.run(measure(tiny_app, REQUESTS_PER_RUN))
            with_t = asyncio.run(measure(wrapped, REQUESTS_PER_RUN))
            runs.append((statistics.median(base_t) / 1000, statistics.median(with_t) / 1000))
            # the mean also carries the sender thread's share (JSON + gzip of each batch)
            means.append((statistics.fmean(with_t) - statistics.fmean(base_t)) / 1000)
        if not sender.flush(30):
            raise RuntimeError(f"sender did not drain: {sender.stats()}")
        stats = sender.stats()
    finally:
        sender.close(timeout=5)
        stub.terminate()
        stub.join(5)
    base_us = statistics.median(r[0] for r in runs)
    with_us = statistics.median(r[1] for r in runs)
    overhead = statistics.median(r[1] - r[0] for r in runs)
    result = {
        "benchmark": "agent_overhead",
        "command": "python -m benchmarks.agent_overhead",
        "machine": {"cores": os.cpu_count(), "memory_gib": _memory_gib(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "requests_per_run": REQUESTS_PER_RUN,
        "runs": RUNS,
        "baseline_median_us": round(base_us, 2),
        "with_agent_median_us": round(with_us, 2),
        "overhead_median_us": round(overhead, 2),
        "overhead_mean_us": round(statistics.median(means), 2),
        "budget_us": BUDGET_US,
        "within_budget": overhead < BUDGET_US,
        "per_run_us": [{"baseline": round(b, 2), "with_agent": round(w, 2)} for b, w in runs],
        "sender": {"sent_events": stats.sent_events, "dropped": stats.dropped},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':28}{'median µs/request':>20}")
    print(f"{'tiny ASGI app (baseline)':28}{base_us:>20.2f}")
    print(f"{'same app + TurnstileASGI':28}{with_us:>20.2f}")
    print(f"{'overhead (budget 25 µs)':28}{overhead:>20.2f}")
    print(f"{'overhead, mean (amortised)':28}{statistics.median(means):>20.2f}")
    print(f"sender: {stats.sent_events} events sent, {stats.dropped} dropped -> {RESULTS}")
    sys.exit(0 if overhead < BUDGET_US else 1)


def _memory_gib() -> float:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0.0
    return round(pages / 2**30, 1)


if __name__ == "__main__":
    main()
