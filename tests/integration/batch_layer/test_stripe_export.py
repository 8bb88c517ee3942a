"""Stripe export against a local HTTP server that checks requests like the real endpoint."""

import csv
import json
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from pydantic import SecretStr

from batch_layer.repository import map_customer
from batch_layer.settings import BatchSettings
from batch_layer.stripe_export import export_period
from schemas.settings import DatabaseSettings

API_KEY = "sk_test_turnstile"
REQUIRED = {"event_name", "payload[stripe_customer_id]", "payload[value]", "identifier",
            "timestamp"}


class FakeStripe(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events: dict[str, dict[str, str]] = {}  # identifier -> form
        self.idempotency: dict[str, dict[str, str]] = {}
        self.problems: list[str] = []
        self.requests = 0


class _Handler(BaseHTTPRequestHandler):
    server: FakeStripe

    def log_message(self, *args):
        pass

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status, message, kind="invalid_request_error"):
        self.server.problems.append(message)
        self._reply(status, {"error": {"type": kind, "message": message}})

    def do_GET(self):
        self._error(405, "GET not allowed")

    def do_POST(self):
        self.server.requests += 1
        if self.path != "/v1/billing/meter_events":
            return self._error(404, f"unknown path {self.path}")
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._error(401, "bad auth", "authentication_error")
        if not self.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded"):
            return self._error(400, "not form encoded")
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        form = {k: v[0] for k, v in parse_qs(body, strict_parsing=True).items()}
        missing = REQUIRED - set(form)
        if missing:
            return self._error(400, f"missing {sorted(missing)}")
        if not form["payload[value]"].isdigit() or not form["timestamp"].isdigit():
            return self._error(400, "value and timestamp must be integers")
        key = self.headers.get("Idempotency-Key")
        if not key:
            return self._error(400, "no Idempotency-Key")
        if key in self.server.idempotency:
            if self.server.idempotency[key] != form:
                return self._error(400, "idempotency key reused with other params",
                                   "idempotency_error")
        elif form["identifier"] in self.server.events:
            return self._error(400, "duplicate identifier")
        self.server.idempotency[key] = form
        self.server.events[form["identifier"]] = form
        self._reply(200, {"object": "billing.meter_event", "livemode": False,
                          "created": int(form["timestamp"]), "event_name": form["event_name"],
                          "identifier": form["identifier"],
                          "payload": {"stripe_customer_id": form["payload[stripe_customer_id]"],
                                      "value": form["payload[value]"]},
                          "timestamp": int(form["timestamp"])})


@pytest.fixture
def fake_stripe():
    server = FakeStripe()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def settings_for(stack, server):
    return BatchSettings(
        stripe_api_key=SecretStr(API_KEY),
        stripe_api_base=f"http://127.0.0.1:{server.server_address[1]}",
        stripe_max_network_retries=0,
        stripe_meters={"api_requests": "total_requests", "search_requests": "tier:premium"},
        database=DatabaseSettings(url=stack.database_url),
    )


def seed(db):
    db.execute("INSERT INTO projects (project_id, name) VALUES ('shop', 'shop')"
               " ON CONFLICT DO NOTHING")
    db.execute("DELETE FROM billing_usage WHERE project_id = 'shop'")
    db.execute("DELETE FROM stripe_meter_exports WHERE project_id = 'shop'")
    for day, key, total, premium in [(date(2026, 10, 1), "k1", 100, 10),
                                     (date(2026, 10, 2), "k1", 50, 0),
                                     (date(2026, 10, 2), "k2", 7, 7),
                                     (date(2026, 10, 2), "unmapped", 9, 0),
                                     (date(2026, 11, 1), "k1", 1000, 0)]:
        db.execute("INSERT INTO billing_usage (project_id, api_key, day, total_requests,"
                   " requests_by_tier, error_count, server_error_count, bytes_in, bytes_out)"
                   " VALUES ('shop', %s, %s, %s, %s, 0, 0, 0, 0)",
                   (key, day, total, json.dumps({"premium": premium, "default": total - premium})))
    map_customer(db, "shop", "k1", "cus_A")
    map_customer(db, "shop", "k2", "cus_B")


def test_export_sends_each_meter_event_once_and_only_growth_later(stack, db, fake_stripe,
                                                                  tmp_path):
    seed(db)
    settings = settings_for(stack, fake_stripe)
    report = export_period(settings, db, "2026-10")
    assert fake_stripe.problems == []
    # k1 day1: 2 meters; k1 day2: api only (premium 0); k2 day2: 2 meters
    assert (report.planned, report.sent, report.failed, report.unmapped_keys) == (5, 5, 0, 1)
    values = sorted((f["payload[stripe_customer_id]"], f["event_name"], f["payload[value]"])
                    for f in fake_stripe.events.values())
    assert values == [("cus_A", "api_requests", "100"), ("cus_A", "api_requests", "50"),
                      ("cus_A", "search_requests", "10"), ("cus_B", "api_requests", "7"),
                      ("cus_B", "search_requests", "7")]
    # a re-run never bills twice
    again = export_period(settings, db, "2026-10")
    assert (again.planned, fake_stripe.requests) == (0, 5)
    # a re-billed day that grew (late files) sends only the difference
    db.execute("UPDATE billing_usage SET total_requests = 130 WHERE project_id = 'shop'"
               " AND api_key = 'k1' AND day = '2026-10-01'")
    grown = export_period(settings, db, "2026-10")
    assert (grown.sent, fake_stripe.requests) == (1, 6)
    assert sorted(f["payload[value]"] for f in fake_stripe.events.values()
                  if f["event_name"] == "api_requests" and f["payload[stripe_customer_id]"]
                  == "cus_A") == ["100", "30", "50"]


def test_a_crash_after_stripe_accepted_resends_the_same_request(stack, db, fake_stripe):
    seed(db)
    settings = settings_for(stack, fake_stripe)
    export_period(settings, db, "2026-10")
    db.execute("DELETE FROM stripe_meter_exports WHERE project_id = 'shop'")  # log lost
    report = export_period(settings, db, "2026-10")
    # same identifiers and idempotency keys: the server sees replays, bills nothing new
    assert report.failed == 0 and fake_stripe.problems == []
    assert len(fake_stripe.events) == 5


def test_dry_run_writes_csv_and_sends_nothing(stack, db, fake_stripe, tmp_path):
    seed(db)
    out = tmp_path / "events.csv"
    report = export_period(settings_for(stack, fake_stripe), db, "2026-11", dry_run_csv=out)
    assert fake_stripe.requests == 0 and report.planned == 1
    [row] = list(csv.DictReader(out.open()))
    assert (row["stripe_customer_id"], row["value"], row["event_name"]) == (
        "cus_A", "1000", "api_requests")


def test_wrong_key_is_refused_and_reported(stack, db, fake_stripe):
    seed(db)
    settings = settings_for(stack, fake_stripe).model_copy(
        update={"stripe_api_key": SecretStr("sk_test_wrong")})
    report = export_period(settings, db, "2026-11")
    assert (report.sent, report.failed) == (0, 1)
