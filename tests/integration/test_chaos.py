"""The short chaos run (``python -m benchmarks.chaos --quick``): every fault in it recovers
by itself with 0 events lost and 0 double-counted against the ground truth.

The run starts its own stack (Kafka, PostgreSQL, every supervised service) on free ports
and stops it; the results go to a temp file, not the committed ``chaos.json``.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import chaos

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(480)
def test_quick_chaos_run_loses_and_double_counts_nothing(tmp_path, monkeypatch):
    out = tmp_path / "chaos.json"
    monkeypatch.setenv("TURNSTILE_CHAOS_RESULTS", str(out))
    # 75 s: a killed lake writer's partitions come back after Kafka's 45 s session timeout.
    chaos.main(["--quick", "--phase-seconds", "12", "--outage-seconds", "12",
                "--recover-timeout", "75"])
    result = json.loads(out.read_text())
    rows = {row["fault"]: row for row in result["faults"]}
    assert set(rows) == set(chaos.QUICK)
    assert result["drain"]["drained"], result["drain"]
    for name, row in rows.items():
        summary = {k: row.get(k) for k in ("recover_s", "lost", "double_counted",
                                           "manual_steps", "notes")}
        assert row["events"] > 0, (name, summary)
        assert row["lost"] == 0, (name, summary)
        assert row["double_counted"] == 0, (name, summary)
        assert row["manual_steps"] == 0, (name, summary)
        assert row["recover_s"] is not None, (name, summary)
    hostile = rows["hostile-events"]
    assert all(400 <= s < 500 or s == 202 for s in hostile["hostile_answers"].values()), hostile
    assert hostile["hostile_good_events"]["events"] > 0
