"""The whole pipeline on one seeded run, against the run's ground truth. No planted rows.

loadgen → real gateway → Kafka → the real speed layer (Bytewax) and the real lake writer →
billing for the day → reconciliation, with 1 % duplicate batches and 2 % late events (half
of them beyond the speed layer's lateness). The traffic lies in a closed day two days ago.
"""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta

import pytest
from bytewax.testing import run_main

from batch_layer.jobs import run_day
from batch_layer.lake import open_lake
from schemas.settings import DatabaseSettings, KafkaSettings, StateSettings
from speed_layer.dataflow import build_flow
from speed_layer.runner import ensure_dead_letter_topic
from speed_layer.settings import SpeedSettings
from tests.integration.batch_layer.conftest import drain, writer_settings
from tests.integration.truth_fixtures import (
    billing,
    create_projects,
    late_events,
    reconciliation,
    running_gateway,
    stream_counts,
    stream_percentiles,
)
from turnstile_cli.loadgen import (
    DirectSender,
    TrafficSpec,
    generate,
    ground_truth,
    send_via_agent,
)

PARTITIONS = 3
# tdigest (compression 200) merged over minute windows, against exact quantiles of all
# events (the stream lacks the late-beyond 1 %): p50/p95 are close, p99 a little looser.
PERCENTILE_TOLERANCE = (0.02, 0.03, 0.05)
MIN_EVENTS_FOR_PERCENTILES = 3_000
# (sender, events, endpoints whose percentiles are checked at least): straight to the
# gateway in gzip'd batches of 1,000, four in flight; or through agent.Sender.
RUNS = {"direct": (100_000, 6), "agent": (20_000, 1)}


@pytest.fixture(params=sorted(RUNS))
def run(request, stack, db, fresh_topic, tmp_path):
    """Generate, send through the gateway, run both layers and billing; return the lot."""
    via = request.param
    events, min_checked = RUNS[via]
    day = (datetime.now(UTC) - timedelta(days=2)).date()
    tag = uuid.uuid4().hex[:8]
    projects = (f"truth-{tag}-shop", f"truth-{tag}-maps")
    keys = create_projects(db, projects)
    topic = fresh_topic(PARTITIONS, prefix="truth")
    spec = TrafficSpec(
        seed=20261202, events=events, events_per_s=120.0,
        start_us=int(datetime.combine(day, time(10), UTC).timestamp()) * 1_000_000,
        projects=projects, consumers=80, duplicate_rate=0.01, late_rate=0.02,
        beyond_share=0.5, in_flight=4 if via == "direct" else 1, run_id=f"t{tag}",
    )
    traffic = generate(spec)
    with running_gateway(stack.kafka_bootstrap, stack.database_url, topic,
                         PARTITIONS) as gateway:
        if via == "direct":
            report = DirectSender(gateway.url, keys).send(traffic)
        else:
            report = send_via_agent(traffic, gateway.url, keys)
    truth = ground_truth(traffic, report.duplicate_batch_ids)
    speed = SpeedSettings(
        kafka=KafkaSettings(bootstrap=stack.kafka_bootstrap, events_topic=topic,
                            dead_letter_topic=fresh_topic(1, prefix="truth-dlq"),
                            events_partitions=PARTITIONS),
        database=DatabaseSettings(url=stack.database_url),
        state=StateSettings(state_dir=tmp_path / "state"),
        stop_at_end=True, emit_interval_s=0.5, snapshot_interval_s=1.0, recovery=False,
        allowed_lateness_s=spec.allowed_lateness_s,
    )
    ensure_dead_letter_topic(speed)
    lake_settings = writer_settings(stack, topic, str(tmp_path / "lake"))
    lake = open_lake(lake_settings)
    with ThreadPoolExecutor(1) as pool:  # the lake writer drains while the flow runs
        drained = pool.submit(drain, lake_settings, lake, PARTITIONS)
        run_main(build_flow(speed))
        drained.result()
    result = run_day(lake_settings, lake, db, day)
    return day, projects, traffic, truth, report, result, min_checked


def test_every_layer_equals_the_ground_truth(db, run):
    day, projects, traffic, truth, report, result, min_checked = run
    s = truth.summary
    assert s["late_within_lateness"] > 0.006 * s["events"] < s["late_beyond_lateness"]
    assert len(truth.duplicate_batch_ids) == len(traffic.duplicated_batches) >= 1
    assert report.events == len(traffic)

    # billing: exact, per (project, api_key, day), duplicates removed, late events counted
    want_billing = truth.requests_per_key_day()
    got_billing = billing(db, projects, day)
    assert {k: v[0] for k, v in got_billing.items()} == want_billing
    errors, server_errors, bytes_in, bytes_out = Counter(), Counter(), Counter(), Counter()
    for (p, k, d, _, status_class), (n, _, b_in, b_out) in truth.counts.items():
        errors[(p, k, d)] += n if status_class >= 4 else 0
        server_errors[(p, k, d)] += n if status_class == 5 else 0
        bytes_in[(p, k, d)] += b_in
        bytes_out[(p, k, d)] += b_out
    for key, (_, e, se, b_in, b_out) in got_billing.items():
        assert (e, se, b_in, b_out) == (errors[key], server_errors[key], bytes_in[key],
                                        bytes_out[key]), key
    dup_rows = [r for b in traffic.duplicated_batches for r in traffic.rows_of(b).tolist()]
    # A gateway 503 after a partial publish adds copies of its own (the sender retried).
    exact_copies = report.retries == 0
    assert result.duplicates_removed >= len(dup_rows) > 0
    assert result.duplicates_removed == len(dup_rows) or not exact_copies

    # the stream: every request except the late-beyond ones, which late_events holds
    assert stream_counts(db, projects, day) == truth.stream_counts()
    assert late_events(db, projects) == truth.late_beyond

    # latency percentiles of the merged minute digests against the exact ones
    got_q = stream_percentiles(db, projects, day)
    checked = 0
    for key, (n, *exact) in truth.percentiles.items():
        if n < MIN_EVENTS_FOR_PERCENTILES:
            continue
        _, sketched = got_q[key]
        for q, want, got, tolerance in zip(("p50", "p95", "p99"), exact, sketched,
                                           PERCENTILE_TOLERANCE, strict=True):
            assert abs(got / want - 1) <= tolerance, (key, q, got, want)
        checked += 1
    assert checked >= min_checked

    # reconciliation explains every difference, and only the late ones differ
    rec = reconciliation(db, projects, day)
    late_per_key = Counter()
    for (p, k, _), n in truth.late_beyond.items():
        late_per_key[(p, k)] += n
    dups_per_key = Counter((projects[traffic.project[r]], traffic.api_key[r].as_py())
                           for r in dup_rows)
    assert set(rec) == {(p, k) for p, k, _ in want_billing}
    for key, row in rec.items():
        assert row["unexplained"] == 0, (key, row)
        assert row["batch_count"] == want_billing[(*key, day.isoformat())]
        assert row["difference"] == row["late_beyond_lateness"] == late_per_key[key], key
        assert row["duplicates_removed"] == dups_per_key[key] or not exact_copies, key
        assert row["duplicates_in_stream"] == 0
        assert row["status"] == ("explained" if late_per_key[key] else "ok")
