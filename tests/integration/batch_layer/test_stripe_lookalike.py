"""The Stripe look-alike refuses what the real API refuses (so the export tests are strict)."""

import json
import threading
import time

import httpx

from tests.integration.batch_layer import stripe_lookalike
from tests.integration.batch_layer.stripe_lookalike import API_KEY

stripe_server = stripe_lookalike.stripe_server  # the fixture

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def meter_event(server, identifier, value="5", ts=None, customer="cus_A", **headers):
    form = {"event_name": "api_requests", "payload[stripe_customer_id]": customer,
            "payload[value]": value, "identifier": identifier,
            "timestamp": str(int(ts if ts is not None else server.now() - 3600))}
    return httpx.post(f"{server.url}/v1/billing/meter_events", data=form,
                      headers={**AUTH, **headers})


def summary(server, customer="cus_A", start=None, end=None):
    now = int(server.now()) // 60 * 60
    r = httpx.get(f"{server.url}/v1/billing/meters/mtr_api_requests/event_summaries",
                  params={"customer": customer, "start_time": start or now - 86_400 * 2,
                          "end_time": end or now + 600}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["data"][0]["aggregated_value"]


def cancel(server, identifier):
    return httpx.post(f"{server.url}/v1/billing/meter_event_adjustments", headers=AUTH,
                      data={"event_name": "api_requests", "type": "cancel",
                            "cancel[identifier]": identifier})


def test_timestamps_must_be_within_35_days_back_and_5_minutes_ahead(stripe_server):
    now = stripe_server.now()
    assert meter_event(stripe_server, "a", ts=now - 35 * 86_400 - 60).status_code == 400
    assert meter_event(stripe_server, "b", ts=now + 360).status_code == 400
    assert meter_event(stripe_server, "c", ts=now - 34 * 86_400).status_code == 200
    assert meter_event(stripe_server, "d", ts=now + 240).status_code == 200


def test_values_must_be_whole_numbers(stripe_server):
    for bad in ("1.5", "-3", "ten", ""):
        assert meter_event(stripe_server, f"v{bad}", value=bad).status_code == 400, bad
    assert summary(stripe_server) == 0


def test_an_identifier_is_refused_for_24_hours_then_forgotten(stripe_server):
    assert meter_event(stripe_server, "same").status_code == 200
    again = meter_event(stripe_server, "same")
    assert again.status_code == 400 and "already exists" in again.text
    stripe_server.advance(24 * 3600 + 60)
    assert meter_event(stripe_server, "same").status_code == 200  # Stripe no longer knows it
    assert summary(stripe_server) == 10


def test_idempotency_keys_replay_and_refuse_other_parameters(stripe_server):
    first = meter_event(stripe_server, "k1", **{"Idempotency-Key": "k1"})
    replay = meter_event(stripe_server, "k1", **{"Idempotency-Key": "k1"})
    assert (first.status_code, replay.status_code) == (200, 200)
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = meter_event(stripe_server, "k1", value="6", **{"Idempotency-Key": "k1"})
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    assert summary(stripe_server) == 5


def test_a_second_concurrent_call_for_a_customer_and_meter_gets_429(stripe_server):
    stripe_server.hold_s = 0.5
    answers = {}

    def call(name, customer):
        answers[name] = meter_event(stripe_server, name, customer=customer).status_code

    threads = [threading.Thread(target=call, args=("x1", "cus_A")),
               threading.Thread(target=call, args=("x2", "cus_A")),
               threading.Thread(target=call, args=("y1", "cus_B"))]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(5)
    assert sorted([answers["x1"], answers["x2"]]) == [200, 429]
    assert answers["y1"] == 200  # another customer is another lane


def test_cancel_only_within_24_hours_and_summaries_subtract_cancelled(stripe_server):
    assert meter_event(stripe_server, "c1").status_code == 200
    assert meter_event(stripe_server, "c2", value="7").status_code == 200
    assert summary(stripe_server) == 12
    assert cancel(stripe_server, "c1").status_code == 200
    assert summary(stripe_server) == 7
    assert cancel(stripe_server, "c1").status_code == 400  # already cancelled
    stripe_server.advance(24 * 3600 + 1)
    late = cancel(stripe_server, "c2")
    assert late.status_code == 400 and "24 hours" in late.text
    assert summary(stripe_server) == 7


def test_summaries_need_customer_and_minute_aligned_range(stripe_server):
    r = httpx.get(f"{stripe_server.url}/v1/billing/meters/mtr_api_requests/event_summaries",
                  params={"customer": "cus_A", "start_time": 61, "end_time": 120}, headers=AUTH)
    assert r.status_code == 400
    r = httpx.get(f"{stripe_server.url}/v1/billing/meters/mtr_nope/event_summaries",
                  params={"customer": "cus_A", "start_time": 60, "end_time": 120}, headers=AUTH)
    assert r.status_code == 404


def stream(server, token, events):
    return httpx.post(f"{server.url}/v2/billing/meter_event_stream",
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "application/json"},
                      content=json.dumps({"events": events}))


def test_stream_sessions_expire_after_15_minutes_and_batches_hold_at_most_100(stripe_server):
    session = httpx.post(f"{stripe_server.url}/v2/billing/meter_event_session", headers=AUTH)
    token = session.json()["authentication_token"]
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stripe_server.now() - 3600))
    events = [{"event_name": "api_requests", "identifier": f"s{i}", "timestamp": ts,
               "payload": {"stripe_customer_id": "cus_A", "value": "1"}} for i in range(101)]
    assert stream(stripe_server, token, events).status_code == 400
    assert stream(stripe_server, token, []).status_code == 400
    assert stream(stripe_server, API_KEY, events[:100]).status_code == 401  # needs a session
    assert stream(stripe_server, token, events[:100]).status_code == 200
    assert summary(stripe_server) == 100
    stripe_server.advance(15 * 60 + 1)
    expired = stream(stripe_server, token, events[100:])
    assert expired.status_code == 401
    assert expired.json()["error"]["type"] == "temporary_session_expired"
    bad = [{**events[100], "payload": {"stripe_customer_id": "cus_A", "value": "0.5"}}]
    fresh = httpx.post(f"{stripe_server.url}/v2/billing/meter_event_session",
                       headers=AUTH).json()["authentication_token"]
    assert stream(stripe_server, fresh, bad).status_code == 400
