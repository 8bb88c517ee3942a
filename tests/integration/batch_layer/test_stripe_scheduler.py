"""The billing scheduler's night: Kafka → lake → exact billing → Stripe, then a late re-run."""

from collections import Counter
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from batch_layer.lake import open_lake
from batch_layer.repository import map_customer, set_tiers
from batch_layer.scheduler import nightly
from batch_layer.stripe_api import StripeMeters
from batch_layer.stripe_rules import day_timestamp
from tests.integration.batch_layer import stripe_lookalike
from tests.integration.batch_layer.conftest import drain, produce, writer_settings
from tests.integration.batch_layer.stripe_lookalike import API_KEY
from tests.unit.batch_layer.fixtures import make_events

stripe_server = stripe_lookalike.stripe_server  # the fixture
PROJECT = "nightshop"


def test_the_scheduler_bills_yesterday_exports_it_and_sends_late_growth(
        stack, db, fresh_topic, tmp_path, stripe_server):
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    start_us = int(datetime(yesterday.year, yesterday.month, yesterday.day,
                            tzinfo=UTC).timestamp() * 1_000_000)
    db.execute("INSERT INTO projects (project_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
               (PROJECT, PROJECT))
    # billing replaces whole days, so other tests' rows of these days would be owed 0
    for table in ("billing_usage", "stripe_meter_exports", "stripe_credits"):
        db.execute(f"DELETE FROM {table} WHERE day >= %s", (yesterday,))  # noqa: S608
    set_tiers(db, PROJECT, [])
    for k in range(3):
        map_customer(db, PROJECT, f"key-{k}", f"cus_night{k}")

    topic = fresh_topic(partitions=2)
    events = make_events(900, seed=41, projects=(PROJECT,), keys=3, day_start_us=start_us)
    on_time, late = events[:800], events[800:]
    produce(stack.kafka_bootstrap, topic, on_time)
    settings = writer_settings(
        stack, topic, str(tmp_path / "lake"), rerun_days=1,
        stripe_export_after_billing=True, stripe_api_key=SecretStr(API_KEY),
        stripe_api_base=stripe_server.url, stripe_meter_events_base=stripe_server.url,
        stripe_max_network_retries=0, stripe_meters={"api_requests": "total_requests"})
    lake = open_lake(settings)
    drain(settings, lake, 2)
    api = StripeMeters(settings, clock=stripe_server.clock)

    def stripe_bills():
        start = day_timestamp(yesterday)
        return {f"key-{k}": stripe_server.billed(f"cus_night{k}", "api_requests", start,
                                                 start + 86_400) for k in range(3)}

    assert nightly(settings, lake, db, today, api=api) == [yesterday]
    assert stripe_bills() == dict(Counter(e.api_key for e in on_time))
    assert stripe_server.problems == []

    # late files arrive; the next night re-bills the day and Stripe gets only the growth
    produce(stack.kafka_bootstrap, topic, late, seed=2)
    drain(settings, lake, 2)
    before = stripe_server.calls["POST /v1/billing/meter_events"]
    nightly(settings, lake, db, today, api=api)
    assert stripe_bills() == dict(Counter(e.api_key for e in events))
    grown = {e.api_key for e in late}
    assert stripe_server.calls["POST /v1/billing/meter_events"] - before == len(grown)
    nightly(settings, lake, db, today, api=api)  # nothing changed: nothing sent
    assert stripe_server.calls["POST /v1/billing/meter_events"] - before == len(grown)


def test_the_export_hook_is_off_by_default_and_skips_without_a_key(stack, db, caplog):
    from batch_layer.jobs import export_after_billing
    from batch_layer.settings import BatchSettings

    day = datetime.now(UTC).date() - timedelta(days=1)
    assert export_after_billing(BatchSettings(), db, [day]) is None
    caplog.set_level("ERROR")
    on = BatchSettings(stripe_export_after_billing=True, stripe_api_key=None)
    assert export_after_billing(on, db, [day]) is None
    assert "TURNSTILE_BATCH_STRIPE_API_KEY is not set: skipped" in caplog.text
