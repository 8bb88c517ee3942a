"""Stripe export against the local look-alike over HTTP, with the log in real PostgreSQL."""

import csv
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from batch_layer.cli import app
from batch_layer.repository import map_customer
from batch_layer.settings import BatchSettings
from batch_layer.stripe_api import StripeMeters
from batch_layer.stripe_export import export_days, export_period
from batch_layer.stripe_repository import list_credits
from batch_layer.stripe_rules import day_timestamp
from schemas.settings import DatabaseSettings
from tests.integration.batch_layer import stripe_lookalike
from tests.integration.batch_layer.stripe_lookalike import API_KEY

stripe_server = stripe_lookalike.stripe_server  # the fixture

HOUR = 3600


def settings_for(stack, server, **overrides):
    values = dict(
        stripe_api_key=SecretStr(API_KEY), stripe_api_base=server.url,
        stripe_meter_events_base=server.url, stripe_max_network_retries=0,
        stripe_meters={"api_requests": "total_requests", "search_requests": "tier:premium"},
        database=DatabaseSettings(url=stack.database_url),
    )
    values.update(overrides)
    return BatchSettings(**values)


class Run:
    """Runs the export with the look-alike's clock; records the waits it asked for."""

    def __init__(self, stack, server, db, **overrides):
        self.server, self.db = server, db
        self.settings = settings_for(stack, server, **overrides)
        self.sleeps: list[float] = []
        self.api = StripeMeters(self.settings, clock=server.clock, sleep=self.sleeps.append)

    def __call__(self, days, clock=None):
        return export_days(self.settings, self.db, days, api=self.api,
                           clock=clock or self.server.clock)


@pytest.fixture
def days(stripe_server):
    today = stripe_server.clock().date()
    return [today - timedelta(days=2), today - timedelta(days=1)]


def clean(db):
    db.execute("INSERT INTO projects (project_id, name) VALUES ('shop', 'shop')"
               " ON CONFLICT DO NOTHING")
    # these tests own the recent days (other tests bill fixed days long past)
    for table in ("billing_usage", "stripe_meter_exports", "stripe_credits"):
        db.execute(f"DELETE FROM {table} WHERE project_id = 'shop'"  # noqa: S608
                   " OR day >= current_date - 70")
    db.execute("DELETE FROM stripe_customers WHERE project_id = 'shop'")


def usage(db, day, key, total, premium=0):
    db.execute("INSERT INTO billing_usage (project_id, api_key, day, total_requests,"
               " requests_by_tier, error_count, server_error_count, bytes_in, bytes_out)"
               " VALUES ('shop', %s, %s, %s, %s, 0, 0, 0, 0)"
               " ON CONFLICT (project_id, api_key, day) DO UPDATE SET"
               " total_requests = EXCLUDED.total_requests,"
               " requests_by_tier = EXCLUDED.requests_by_tier",
               (key, day, total, json.dumps({"premium": premium, "default": total - premium})))


def seed(db, days):
    clean(db)
    d1, d2 = days
    for day, key, total, premium in [(d1, "k1", 100, 10), (d2, "k1", 50, 0),
                                     (d2, "k2", 7, 7), (d2, "unmapped", 9, 0)]:
        usage(db, day, key, total, premium)
    map_customer(db, "shop", "k1", "cus_A")
    map_customer(db, "shop", "k2", "cus_B")


def billed(server, customer, meter, day):
    start = day_timestamp(day)
    return server.billed(customer, meter, start, start + 86_400)


def assert_stripe_bills(server, expected):
    for (customer, meter, day), value in expected.items():
        assert billed(server, customer, meter, day) == value, (customer, meter, day)


def test_export_sends_each_meter_event_once_and_only_growth_later(stack, db, stripe_server,
                                                                  days):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    d1, d2 = days
    report = run(days)
    assert stripe_server.problems == []
    # k1 day1: 2 meters; k1 day2: api only (premium 0); k2 day2: 2 meters
    assert (report.planned, report.sent, report.failed, report.unmapped_keys) == (5, 5, 0, 1)
    assert_stripe_bills(stripe_server, {("cus_A", "api_requests", d1): 100,
                                        ("cus_A", "search_requests", d1): 10,
                                        ("cus_A", "api_requests", d2): 50,
                                        ("cus_B", "api_requests", d2): 7,
                                        ("cus_B", "search_requests", d2): 7})
    again = run(days)
    assert (again.planned, stripe_server.calls["POST /v1/billing/meter_events"]) == (0, 5)
    usage(db, d1, "k1", 130, 10)  # a re-billed day that grew (late files)
    grown = run(days)
    assert (grown.sent, stripe_server.calls["POST /v1/billing/meter_events"]) == (1, 6)
    assert sorted(e.value for e in stripe_server.live() if e.customer == "cus_A"
                  and e.event_name == "api_requests") == [30, 50, 100]


def test_a_log_lost_inside_the_identifier_window_resends_nothing(stack, db, stripe_server,
                                                                 days):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    run(days)
    db.execute("DELETE FROM stripe_meter_exports WHERE project_id = 'shop'")
    report = run(days)
    assert report.failed == 0 and stripe_server.problems == []
    assert report.sent == 0 and report.rebuilt_from_summaries == 5
    assert len(stripe_server.live()) == 5


def test_a_log_lost_after_the_identifier_window_sends_only_the_difference(stack, db,
                                                                          stripe_server, days):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    d1, d2 = days
    run(days)
    stripe_server.advance(25 * HOUR)  # Stripe no longer remembers the identifiers
    db.execute("DELETE FROM stripe_meter_exports WHERE project_id = 'shop'")
    usage(db, d1, "k1", 112, 10)
    report = run(days)
    assert report.failed == 0 and stripe_server.problems == []
    assert (report.rebuilt_from_summaries, report.sent) == (5, 1)
    assert_stripe_bills(stripe_server, {("cus_A", "api_requests", d1): 112,
                                        ("cus_A", "search_requests", d1): 10,
                                        ("cus_A", "api_requests", d2): 50,
                                        ("cus_B", "api_requests", d2): 7,
                                        ("cus_B", "search_requests", d2): 7})
    # and the rebuilt log is the authority from now on: nothing more is sent
    assert run(days).planned == 0


def test_a_shrink_inside_the_cancel_window_cancels_and_resends_the_right_value(
        stack, db, stripe_server, days):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    d1, _ = days
    run(days)
    stripe_server.advance(3 * HOUR)
    usage(db, d1, "k1", 90, 10)
    report = run(days)
    assert (report.cancelled, report.sent, report.credits_flagged) == (1, 1, 0)
    assert billed(stripe_server, "cus_A", "api_requests", d1) == 90
    assert stripe_server.problems == []
    assert list_credits(db) == []
    assert run(days).planned == 0


def test_a_shrink_past_the_cancel_window_is_flagged_for_a_manual_credit(
        stack, db, stripe_server, days, stack_env):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    d1, _ = days
    run(days)
    stripe_server.advance(25 * HOUR)
    usage(db, d1, "k1", 90, 10)
    report = run(days)
    assert (report.cancelled, report.sent, report.credits_flagged) == (0, 0, 1)
    assert stripe_server.calls["POST /v1/billing/meter_event_adjustments"] == 0
    assert billed(stripe_server, "cus_A", "api_requests", d1) == 100  # never re-billed
    [credit] = list_credits(db)
    assert (credit["api_key"], credit["day"], credit["event_name"], credit["amount"],
            credit["billed"], credit["exact"]) == ("k1", d1, "api_requests", 10, 100, 90)
    assert run(days).credits_flagged == 0 and len(list_credits(db)) == 1  # flagged once
    usage(db, d1, "k1", 85, 10)  # shrinks further: the same open credit grows
    run(days)
    [credit] = list_credits(db)
    assert credit["amount"] == 15
    # the CLI lists it, as a table and as JSON
    cli = CliRunner()
    table = cli.invoke(app, ["billing", "credits"])
    assert table.exit_code == 0 and "cus_A" in table.output and "15" in table.output
    listed = json.loads(cli.invoke(app, ["billing", "credits", "--json"]).output)
    assert [(c["credit_id"], c["amount"]) for c in listed] == [(credit["credit_id"], 15)]
    # growing back withdraws it before anything is sent
    usage(db, d1, "k1", 100, 10)
    grown = run(days)
    assert (grown.credits_withdrawn, grown.sent) == (1, 0)
    assert list_credits(db) == []
    assert billed(stripe_server, "cus_A", "api_requests", d1) == 100


def test_an_issued_credit_is_final_and_marked_from_the_cli(stack, db, stripe_server, days,
                                                           stack_env):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    d1, _ = days
    run(days)
    stripe_server.advance(25 * HOUR)
    usage(db, d1, "k1", 90, 10)
    run(days)
    [credit] = list_credits(db)
    cli = CliRunner()
    assert cli.invoke(app, ["billing", "credits", "--mark-credited",
                            str(credit["credit_id"])]).exit_code == 0
    assert cli.invoke(app, ["billing", "credits", "--mark-credited", "999999"]).exit_code == 1
    assert run(days).planned == 0 and list_credits(db) == []
    [done] = list_credits(db, None)
    assert done["status"] == "credited"


def test_a_cancel_stripe_refuses_becomes_a_credit(stack, db, stripe_server, days):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    d1, _ = days
    run(days)
    stripe_server.advance(25 * HOUR)
    usage(db, d1, "k1", 90, 10)
    # our clock runs 2 h behind Stripe's: we think the event is cancellable, Stripe does not
    report = run(days, clock=lambda: stripe_server.clock() - timedelta(hours=2))
    assert stripe_server.calls["POST /v1/billing/meter_event_adjustments"] == 1
    assert (report.cancelled, report.credits_flagged, report.sent) == (0, 1, 0)
    assert billed(stripe_server, "cus_A", "api_requests", d1) == 100


def test_429_is_retried_honouring_retry_after(stack, db, stripe_server, days):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    stripe_server.force_429, stripe_server.retry_after = 2, "3"
    report = run(days)
    assert (report.sent, report.failed, report.rate_limited) == (5, 0, 2)
    assert run.sleeps == [3.0, 3.0]


def test_429_without_retry_after_backs_off_exponentially_then_gives_up(stack, db,
                                                                       stripe_server, days):
    seed(db, days)
    run = Run(stack, stripe_server, db, stripe_rate_limit_retries=3, stripe_backoff_max_s=1.5)
    stripe_server.force_429, stripe_server.retry_after = 4, None
    report = run(days)
    assert len(run.sleeps) == 3 and all(0 < s <= 1.5 for s in run.sleeps)
    assert run.sleeps[1] > run.sleeps[0] / 2 * 2 * 0.5  # doubled, with jitter
    assert (report.failed, report.sent) == (1, 4)  # the fourth 429 is final for one event
    assert run(days).sent == 1  # the next run sends it


def test_a_busy_day_goes_through_the_v2_stream_in_batches_of_100(stack, db, stripe_server,
                                                                 days):
    clean(db)
    _, d2 = days
    for i in range(250):
        usage(db, d2, f"c{i:03}", i + 1)
        map_customer(db, "shop", f"c{i:03}", f"cus_{i:03}")
    run = Run(stack, stripe_server, db, stripe_stream_threshold=100,
              stripe_meters={"api_requests": "total_requests"})
    report = run(days)
    assert (report.sent, report.streamed, report.failed) == (250, 250, 0)
    assert stripe_server.calls["POST /v2/billing/meter_event_stream"] == 3
    assert stripe_server.calls["POST /v2/billing/meter_event_session"] == 1
    assert stripe_server.calls["POST /v1/billing/meter_events"] == 0
    assert billed(stripe_server, "cus_249", "api_requests", d2) == 250
    # the session expires; our clock runs behind, so Stripe has to tell us: renew and resend
    stripe_server.advance(16 * 60)
    for i in range(150):
        usage(db, d2, f"c{i:03}", i + 2)
    lagging = run(days, clock=lambda: stripe_server.clock() - timedelta(minutes=15))
    assert (lagging.streamed, lagging.failed) == (150, 0)
    assert stripe_server.calls["POST /v2/billing/meter_event_session"] == 2
    assert billed(stripe_server, "cus_000", "api_requests", d2) == 2
    # a quiet day stays on v1
    for i in range(3):
        usage(db, d2, f"c{i:03}", i + 3)
    assert run(days).streamed == 0 and stripe_server.calls["POST /v1/billing/meter_events"] == 3


def test_days_older_than_35_days_are_refused_naming_the_day_and_the_limit(
        stack, db, stripe_server):
    clean(db)
    old = stripe_server.clock().date() - timedelta(days=40)
    usage(db, old, "k1", 10)
    map_customer(db, "shop", "k1", "cus_A")
    report = Run(stack, stripe_server, db)([old])
    [message] = report.refused
    assert str(old) in message and "35-day" in message
    assert sum(stripe_server.calls.values()) == 0


def test_export_period_covers_a_month_and_refuses_its_old_days(stack, db, stripe_server):
    clean(db)
    now = stripe_server.clock()
    month_start = (now - timedelta(days=60)).replace(day=1).date()
    usage(db, month_start, "k1", 10)
    map_customer(db, "shop", "k1", "cus_A")
    run = Run(stack, stripe_server, db)
    report = export_period(run.settings, db, month_start.strftime("%Y-%m"), api=run.api,
                           clock=stripe_server.clock)
    assert len(report.refused) == 1 and report.sent == 0


def test_dry_run_writes_csv_and_sends_nothing(stack, db, stripe_server, days, tmp_path):
    seed(db, days)
    out = tmp_path / "events.csv"
    report = export_days(settings_for(stack, stripe_server), db, days[:1], dry_run_csv=out,
                         clock=stripe_server.clock)
    assert sum(stripe_server.calls.values()) == 0 and report.planned == 2
    rows = list(csv.DictReader(out.open()))
    assert [(r["stripe_customer_id"], r["value"], r["event_name"]) for r in rows] == [
        ("cus_A", "100", "api_requests"), ("cus_A", "10", "search_requests")]


def test_wrong_key_is_refused_and_reported(stack, db, stripe_server, days):
    seed(db, days)
    settings = settings_for(stack, stripe_server, stripe_api_key=SecretStr("sk_test_wrong"))
    report = export_days(settings, db, days, clock=stripe_server.clock)
    assert (report.sent, report.failed) == (0, 1)


def test_a_missing_api_key_is_one_clear_line_from_the_cli(stack_env, monkeypatch):
    monkeypatch.delenv("TURNSTILE_BATCH_STRIPE_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["billing", "export-stripe", "--period",
                                      datetime.now(UTC).strftime("%Y-%m")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: TURNSTILE_BATCH_STRIPE_API_KEY is not set (or use --dry-run)"]


def lose_answer(db, day, key="k1", meter="api_requests"):
    """As if the process died after Stripe accepted the call, before settling the log."""
    db.execute("UPDATE stripe_meter_exports SET pending = true WHERE project_id = 'shop'"
               " AND api_key = %s AND day = %s AND event_name = %s", (key, day, meter))


def test_an_unanswered_send_is_repeated_identically_inside_the_window(stack, db,
                                                                      stripe_server, days):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    d1, _ = days
    run(days)
    lose_answer(db, d1)
    usage(db, d1, "k1", 120, 10)  # and the day grew meanwhile
    report = run(days)
    assert (report.settled, report.sent, report.failed) == (1, 1, 0)
    assert billed(stripe_server, "cus_A", "api_requests", d1) == 120
    assert stripe_server.problems == []


def test_an_unanswered_send_past_the_window_is_settled_by_the_summaries(stack, db,
                                                                        stripe_server, days):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    d1, _ = days
    run(days)
    lose_answer(db, d1)
    stripe_server.advance(25 * HOUR)
    report = run(days)
    assert (report.settled, report.sent) == (1, 0)
    assert billed(stripe_server, "cus_A", "api_requests", d1) == 100
    # an intent that never reached Stripe is dropped and then sent
    db.execute("DELETE FROM stripe_meter_exports WHERE project_id = 'shop' AND api_key = 'k2'")
    db.execute("INSERT INTO stripe_meter_exports (identifier, project_id, api_key, day,"
               " event_name, revision, value, stripe_customer_id, sent_at, channel, pending)"
               " VALUES ('tsl_never', 'shop', 'k2', %s, 'api_requests', 9, 7, 'cus_B',"
               " %s, 'v1', true)", (days[1], stripe_server.clock() - timedelta(hours=30)))
    stripe_server.forget("cus_B")
    report = run(days)
    assert report.settled == 1 and report.sent == 2  # k2's two meters
    assert billed(stripe_server, "cus_B", "api_requests", days[1]) == 7
    assert db.execute("SELECT count(*) FROM stripe_meter_exports"
                      " WHERE identifier = 'tsl_never'").fetchone()[0] == 0


def test_an_unanswered_cancel_is_settled_by_the_summaries(stack, db, stripe_server, days):
    seed(db, days)
    run = Run(stack, stripe_server, db)
    d1, _ = days
    run(days)
    [ident] = [i for (i,) in db.execute(
        "SELECT identifier FROM stripe_meter_exports WHERE api_key = 'k1' AND day = %s"
        " AND event_name = 'api_requests'", (d1,)).fetchall()]
    # the cancel reached Stripe, its answer did not reach the log
    run.api.cancel("api_requests", ident)
    db.execute("UPDATE stripe_meter_exports SET cancel_requested_at = now()"
               " WHERE identifier = %s", (ident,))
    stripe_server.advance(25 * HOUR)
    report = run(days)
    assert report.settled == 1 and report.sent == 1
    assert billed(stripe_server, "cus_A", "api_requests", d1) == 100
    assert run(days).planned == 0
