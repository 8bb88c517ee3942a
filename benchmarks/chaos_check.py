"""What each layer stored for one fault's project, against that project's ground truth.

Lost = requests the truth has and the layer lacks; double-counted = the layer has more
than the truth, summed per key (billing: per api_key and day; the stream: per api_key,
day, endpoint and status class, late-beyond events excluded as ``late_events`` holds them).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, TypeVar

from benchmarks.chaos_stack import ChaosStack
from turnstile_cli.loadgen import GroundTruth

K = TypeVar("K")


def lost_and_double(want: Mapping[K, int], got: Mapping[K, int]) -> tuple[int, int]:
    lost = sum(max(0, n - got.get(k, 0)) for k, n in want.items())
    double = sum(max(0, n - want.get(k, 0)) for k, n in got.items())
    return lost, double


def billing_counts(stack: ChaosStack, project: str) -> dict[tuple[str, str, str], int]:
    rows = stack.query("SELECT project_id, api_key, day::text, total_requests FROM billing_usage"
                       " WHERE project_id = %s", (project,))
    return {(str(p), str(k), str(d)): int(n) for p, k, d, n in rows}


def stream_counts(stack: ChaosStack, project: str
                  ) -> dict[tuple[str, str, str, str, int], int]:
    rows = stack.query(
        "SELECT project_id, api_key, to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD'),"
        " endpoint, status_class, sum(request_count)::bigint FROM metrics_1m"
        " WHERE project_id = %s GROUP BY 1, 2, 3, 4, 5", (project,))
    return {(str(p), str(k), str(d), str(e), int(s)): int(n)
            for p, k, d, e, s, n in rows}


def late_counts(stack: ChaosStack, project: str) -> dict[tuple[str, str, str], int]:
    rows = stack.query(
        "SELECT project_id, api_key,"
        " to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:00\"Z\"'), event_count"
        " FROM late_events WHERE project_id = %s", (project,))
    return {(str(p), str(k), str(m)): int(n) for p, k, m, n in rows}


def compare(stack: ChaosStack, project: str, truth: GroundTruth) -> dict[str, int]:
    """Lost and double-counted requests of ``project`` in billing, the stream, late_events."""
    b_lost, b_double = lost_and_double(truth.requests_per_key_day(),
                                       billing_counts(stack, project))
    s_lost, s_double = lost_and_double(truth.stream_counts(), stream_counts(stack, project))
    l_lost, l_double = lost_and_double(truth.late_beyond, late_counts(stack, project))
    return {"events": int(truth.summary["events"]), "billing_lost": b_lost,
            "billing_double": b_double, "stream_lost": s_lost, "stream_double": s_double,
            "late_events_lost": l_lost, "late_events_double": l_double}


def compare_flat(stack: ChaosStack, project: str, expected: int) -> dict[str, int]:
    """For the hostile fault's good events: one count per layer, nothing late."""
    billed = sum(billing_counts(stack, project).values())
    streamed = sum(stream_counts(stack, project).values())
    return {"events": expected, "billing_lost": max(0, expected - billed),
            "billing_double": max(0, billed - expected),
            "stream_lost": max(0, expected - streamed),
            "stream_double": max(0, streamed - expected),
            "late_events_lost": 0, "late_events_double": 0}


def drain(stack: ChaosStack, projects: list[str], timeout: float, settle_s: float = 8.0
          ) -> dict[str, Any]:
    """Wait until the lake writer has committed everything and ``metrics_1m`` stops moving."""
    started = time.monotonic()
    last: tuple[int, ...] = ()
    stable_since = time.monotonic()
    lag = -1
    while time.monotonic() - started < timeout:
        try:
            done, high = stack.lake_committed()
            lag = high - done
            totals = tuple(int(r[0]) for r in stack.query(
                "SELECT coalesce(sum(request_count), 0)::bigint FROM metrics_1m"
                " WHERE project_id = ANY(%s)", (projects,)))
        except Exception:  # noqa: BLE001 - keep polling until the bound
            time.sleep(1)
            continue
        if totals != last:
            last, stable_since = totals, time.monotonic()
        if lag == 0 and time.monotonic() - stable_since >= settle_s:
            return {"drained": True, "seconds": round(time.monotonic() - started, 1)}
        time.sleep(1)
    return {"drained": False, "seconds": round(time.monotonic() - started, 1),
            "lake_lag_records": lag}


def dead_letters(stack: ChaosStack) -> Counter[str]:
    """Dead-lettered records per component (the unstorable ones must end here)."""
    try:
        rows = stack.query("SELECT component, count(*) FROM dead_letters GROUP BY 1")
    except Exception:  # noqa: BLE001 - the table is part of the contract being tested
        return Counter()
    return Counter({str(c): int(n) for c, n in rows})
