"""The ingestion endpoint against real Kafka, PostgreSQL and uvicorn: statuses and records."""

from __future__ import annotations

import gzip
import time
import uuid

import httpx
import orjson
import pytest

from ingest_gateway.enrich import IpHasher
from schemas import keystore
from schemas.records import partitions_for
from schemas.settings import KafkaSettings
from tests.integration.ingest_gateway.helpers import event, read_topic
from tests.unit.ingest_gateway.mmdb_writer import write_mmdb


def test_good_batch_is_acknowledged_and_lands_once_in_one_record_on_its_keys_partition(
        stack, gateway, keys):
    events = [event(i) for i in range(20)]
    batch_id = f"b-{uuid.uuid4().hex}"
    resp = gateway.post(events, keys.write, headers={"X-Turnstile-Batch-Id": batch_id})
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"accepted": 20, "rejected": []}

    got = read_topic(stack.kafka_bootstrap, gateway.topic, 20)
    assert sorted(r.value["event_id"] for r in got) == sorted(e["event_id"] for e in events)
    key = f"{keys.project}:cust-1".encode()
    (partition,) = partitions_for([key], gateway.partitions).tolist()
    assert len({r.offset for r in got}) == 1  # one key: one record
    for r in got:
        assert r.key == key
        assert r.partition == partition  # Kafka's default partitioner's choice
        assert r.value["batch_id"] == batch_id
        assert r.value["event_id"] == events[r.value["batch_index"]]["event_id"]
        assert r.value["project_id"] == keys.project
        assert r.value["endpoint"] == "/users/{id}"
        assert abs(r.value["received_at_us"] / 1e6 - time.time()) < 60


def test_partly_bad_batch_accepts_the_good_events_exactly_once(stack, gateway, keys):
    events = [event(0), event(1, status_code=700), event(2), event(3, method="FETCH", path="x")]
    resp = gateway.post({"events": events}, keys.write, gzipped=True)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 3]
    assert any(e.startswith("status_code:") for e in body["rejected"][0]["errors"])
    assert len(body["rejected"][1]["errors"]) == 2  # method and path, both reported

    got = read_topic(stack.kafka_bootstrap, gateway.topic, 2)
    assert sorted(r.value["event_id"] for r in got) == sorted(
        [events[0]["event_id"], events[2]["event_id"]]
    )


def test_nothing_valid_is_400_with_every_rejection(gateway, keys):
    resp = gateway.post([event(0, status_code=99), {"event_id": "x"}], keys.write)
    assert resp.status_code == 400
    body = resp.json()
    assert body["accepted"] == 0
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert "timestamp: required" in body["rejected"][1]["errors"]


@pytest.mark.parametrize(
    ("raw", "headers", "status", "fragment"),
    [
        (b"[{", {}, 400, "body:"),
        (b'{"evts": []}', {}, 400, "expected a JSON array"),
        (b"[]", {}, 400, "no events"),
        (b"[]", {"Content-Type": "text/plain"}, 415, "application/json"),
        (b"[]", {"Content-Encoding": "br"}, 415, "content-encoding"),
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400, "gzip"),
        (b"[]", {"X-Turnstile-Batch-Id": "has space"}, 400, "X-Turnstile-Batch-Id"),
    ],
)
def test_unreadable_bodies_get_a_status_and_a_message(gateway, keys, raw, headers, status,
                                                      fragment):
    resp = gateway.post(None, keys.write, raw=raw, headers=headers)
    assert resp.status_code == status, resp.text
    assert fragment in resp.json()["detail"]


def test_limits_give_413(start_gateway, keys):
    gw = start_gateway(max_events=5, rate_limit_burst_events=100, max_body_bytes=64 * 1024)
    resp = gw.post([event(i) for i in range(6)], keys.write)
    assert resp.status_code == 413
    assert "limit is 5" in resp.json()["detail"]

    big = [event(0, user_agent="x" * 70_000)]
    assert gw.post(big, keys.write).status_code == 413
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    assert len(bomb) < 100_000
    resp = gw.post(None, keys.write, raw=bomb, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413
    assert "decompressed" in resp.json()["detail"]


def test_keys_that_may_not_write_are_refused(gateway, keys):
    assert gateway.post([event()], None).status_code == 401
    assert gateway.post([event()], "tsk_w_" + "a" * 43).status_code == 401
    assert gateway.post([event()], "garbage").status_code == 401
    assert gateway.post([event()], keys.read).status_code == 403
    assert gateway.post([event()], keys.admin).status_code == 403
    bearer = httpx.post(f"{gateway.url}/api/v1/events/batch", content=orjson.dumps([event()]),
                        headers={"Authorization": f"Bearer {keys.write}"})
    assert bearer.status_code == 202


def test_events_land_in_the_keys_project_whatever_they_claim(stack, gateway, make_keys):
    mine, other = make_keys(), make_keys()
    resp = gateway.post([event(0, project_id=other.project)], mine.write)
    assert resp.status_code == 202
    (got,) = read_topic(stack.kafka_bootstrap, gateway.topic, 1)
    assert got.value["project_id"] == mine.project
    assert got.key.startswith(f"{mine.project}:".encode())


def test_revoked_key_is_refused_within_the_cache_ttl(start_gateway, keys, db):
    gw = start_gateway(key_cache_ttl_s=1.0)
    assert gw.post([event()], keys.write).status_code == 202
    assert keystore.revoke_key(db, keys.project, keys.write_id)
    deadline = time.monotonic() + 3.0
    while gw.post([event()], keys.write).status_code == 202:
        assert time.monotonic() < deadline, "revoked key still accepted after the TTL"
        time.sleep(0.2)
    assert gw.post([event()], keys.write).status_code == 401


def test_rate_limit_answers_429_with_retry_after(start_gateway, keys):
    gw = start_gateway(max_events=10, rate_limit_events_per_s=5, rate_limit_burst_events=10)
    assert gw.post([event(i) for i in range(10)], keys.write).status_code == 202
    resp = gw.post([event(i) for i in range(4)], keys.write)
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1


def test_health_readiness_and_metrics(gateway, keys):
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"kafka": "ok", "postgres": "ok"}
    gateway.post([event(0), event(1, status_code=1)], keys.write)
    gateway.post([event()], "tsk_w_" + "b" * 43)
    text = httpx.get(f"{gateway.url}/metrics").text
    assert "turnstile_gateway_events_accepted_total" in text
    assert 'turnstile_gateway_events_rejected_total{reason="invalid"}' in text
    assert 'turnstile_gateway_requests_rejected_total{reason="unknown_key"}' in text
    assert "turnstile_gateway_publish_seconds_bucket" in text


def test_not_ready_when_the_topic_has_another_partition_count_than_the_settings(
        stack, start_gateway, gateway_topic, keys):
    """Keys would land where Kafka's partitioner does not put them for the settings' count."""
    gw = start_gateway(kafka=KafkaSettings(bootstrap=stack.kafka_bootstrap,
                                           events_topic=gateway_topic, events_partitions=5))
    ready = httpx.get(f"{gw.url}/readyz", timeout=10)
    assert ready.status_code == 503, ready.text
    assert ready.json()["kafka"] != "ok"
    resp = gw.post([event(i, api_key=f"c{i}") for i in range(30)], keys.write)
    assert resp.status_code == 202, resp.text  # still produced, by the topic's real count
    got = read_topic(stack.kafka_bootstrap, gateway_topic, 30)
    for r in got:
        (want,) = partitions_for([r.key], 3).tolist()
        assert r.partition == want


def test_country_from_event_header_or_geoip_then_ip_privacy(stack, start_gateway, make_keys,
                                                           tmp_path):
    geo = write_mmdb(tmp_path / "geo.mmdb",
                     {"203.0.113.0/24": {"country": {"iso_code": "DE"}}})
    gw = start_gateway(geoip_database=geo, country_header="CF-IPCountry",
                       ip_hash_key="test-hash-key")
    truncating, hashing = make_keys("truncate"), make_keys("hash")
    batch = [event(0, ip="203.0.113.77", country="JP"), event(1, ip="203.0.113.77"),
             event(2, ip="192.0.2.1"), event(3, ip="2001:db8:1:2::9")]
    assert gw.post(batch, truncating.write).status_code == 202
    assert gw.post(batch[1:2], hashing.write).status_code == 202
    assert gw.post(batch[2:3], hashing.write, headers={"CF-IPCountry": "ch"}).status_code == 202

    got = {(r.value["project_id"], r.value["event_id"]): r.value
           for r in read_topic(stack.kafka_bootstrap, gw.topic, 6)}
    t = [got[(truncating.project, e["event_id"])] for e in batch]
    assert [(v["ip"], v.get("country")) for v in t] == [
        ("203.0.113.0", "JP"), ("203.0.113.0", "DE"), ("192.0.2.0", None),
        ("2001:db8:1::", None),
    ]
    hashed = got[(hashing.project, batch[1]["event_id"])]
    assert hashed["country"] == "DE"
    assert hashed["ip"] == IpHasher(b"test-hash-key").hash(hashing.project, "203.0.113.77")
    assert got[(hashing.project, batch[2]["event_id"])]["country"] == "CH"
