"""Pipeline health from heartbeats, and dead letters per project (tenant-isolated)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from schemas.dead_letters import DeadLetter, record_dead_letters
from schemas.ops import HEARTBEAT_INTERVAL_S

CONTROLLED = ("speed_layer", "lake_writer", "billing", "alerting")


def until() -> dict[str, str]:
    """The app's clock is pinned to the session's start; dead letters are recorded later."""
    return {"until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}


def put_beat(db, component, instance, age_s, state="running", lag=None, success_ago_s=None):
    db.execute(
        "INSERT INTO pipeline_heartbeats (component, instance, state, started_at, beat_at,"
        " last_success_at, lag_events, details) VALUES (%s, %s, %s, now() - interval '1 hour',"
        " now() - make_interval(secs => %s), now() - make_interval(secs => %s), %s, %s::jsonb)",
        (component, instance, state, age_s, success_ago_s if success_ago_s is not None
         else age_s, lag, json.dumps({"partitions": 2})))


@pytest.fixture
def beats(db):
    """Known heartbeats of four components; other tests' rows for them are set aside."""
    saved = db.execute("DELETE FROM pipeline_heartbeats WHERE component = ANY(%s) RETURNING "
                       "component, instance, state, started_at, beat_at, last_success_at,"
                       " lag_events, details", (list(CONTROLLED),)).fetchall()
    put_beat(db, "speed_layer", "host:1", 1.0, lag=120, success_ago_s=2.0)
    put_beat(db, "speed_layer", "host:0", 3600.0, state="stopped", lag=5)  # before a restart
    put_beat(db, "lake_writer", "host:2", 3 * HEARTBEAT_INTERVAL_S + 30, lag=99)  # silent
    put_beat(db, "billing", "host:3", 1.0, state="stopped")
    yield db
    db.execute("DELETE FROM pipeline_heartbeats WHERE component = ANY(%s)", (list(CONTROLLED),))
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO pipeline_heartbeats (component, instance, state, started_at, beat_at,"
            " last_success_at, lag_events, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            [(*r[:7], json.dumps(r[7])) for r in saved])


def test_health_shows_up_down_and_unknown_components(world, beats):
    r = world.client.get("/api/v1/pipeline/health", headers=world.a.h())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stale_after_s"] == 3 * HEARTBEAT_INTERVAL_S and body["status"] == "degraded"
    by = {c["component"]: c for c in body["components"]}
    assert list(by)[:6] == ["gateway", "speed_layer", "lake_writer", "billing", "query_api",
                            "alerting"]
    speed = by["speed_layer"]
    assert (speed["status"], speed["state"], speed["instance"]) == ("up", "running", "host:1")
    assert speed["lag_events"] == 120 and speed["instances_up"] == 1
    assert speed["seconds_since_beat"] < 5 and speed["last_success_at"]
    assert [i["status"] for i in speed["instances"]] == ["up", "down"]
    assert speed["instances"][0]["details"] == {"partitions": 2}
    lake = by["lake_writer"]
    assert lake["status"] == "down" and lake["state"] == "running"  # its last words
    assert lake["seconds_since_beat"] > 3 * HEARTBEAT_INTERVAL_S
    assert lake["lag_events"] == 99  # its last report
    assert by["billing"]["status"] == "down"
    assert by["alerting"] == {**by["alerting"], "status": "unknown", "instances": [],
                              "state": None, "lag_events": None}
    assert by["query_api"]["status"] == "up"  # the app under test beats itself


def test_health_is_the_same_for_every_tenant_and_needs_a_read_key(world, beats):
    a = world.client.get("/api/v1/pipeline/health", headers=world.a.h()).json()
    b = world.client.get("/api/v1/pipeline/health", headers=world.b.h()).json()
    assert [c["status"] for c in a["components"]] == [c["status"] for c in b["components"]]
    assert world.client.get("/api/v1/pipeline/health").status_code == 401
    assert world.client.get("/api/v1/pipeline/health",
                            headers=world.a.h("write")).status_code == 403


@pytest.fixture
def letters(world, db):
    a, b = world.a.project_id, world.b.project_id
    record_dead_letters(db, [
        DeadLetter("speed_layer", "path: contains U+0000", project_id=a, topic="t", partition=0,
                   offset=i, event_id=f"ev-a{i}", value=b'{"path": "/x\\u0000"}')
        for i in range(5)
    ] + [
        DeadLetter("lake_writer", "timestamp out of range", project_id=a, topic="t",
                   partition=1, offset=7, event_id="ev-a-late", value=b"\xff\x00raw"),
        DeadLetter("speed_layer", "secret reason of B", project_id=b, topic="t", partition=2,
                   offset=1, event_id="ev-b", value=b"B's payload"),
        DeadLetter("billing", "no project at all", project_id=None, topic="t", partition=3,
                   offset=1),
    ])
    db.execute("UPDATE dead_letters SET recorded_at = recorded_at - interval '3 days' "
               "WHERE event_id = 'ev-a0'")
    yield
    db.execute("DELETE FROM dead_letters WHERE kafka_topic = 't'")


def test_dead_letters_counts_and_newest_rows_of_the_callers_project(world, letters):
    r = world.client.get("/api/v1/pipeline/dead-letters", headers=world.a.h(), params={
        "since": (datetime.now(UTC) - timedelta(days=1)).isoformat(), **until()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["project_id"] == world.a.project_id and body["total"] == 5  # ev-a0 is older
    assert [(c["component"], c["reason"], c["count"]) for c in body["counts"]] == [
        ("speed_layer", "path: contains U+0000", 4), ("lake_writer", "timestamp out of range", 1)]
    newest = body["dead_letters"]
    assert len(newest) == 5 and newest[0]["recorded_at"] >= newest[-1]["recorded_at"]
    late = next(d for d in newest if d["event_id"] == "ev-a-late")
    assert (late["kafka_topic"], late["kafka_partition"], late["kafka_offset"]) == ("t", 1, 7)
    assert "\\x00" in late["payload_sample"]  # escaped, storable, printable

    week = world.client.get("/api/v1/pipeline/dead-letters", headers=world.a.h(),
                            params={"since": "now-7d", **until()}).json()
    assert week["total"] == 6


def test_project_b_never_sees_project_as_dead_letters(world, letters):
    b = world.client.get("/api/v1/pipeline/dead-letters", headers=world.b.h(),
                         params={"since": "now-30d", **until()})
    assert b.status_code == 200
    text = b.text
    assert b.json()["total"] == 1 and "secret reason of B" in text
    assert "ev-a" not in text and "U+0000" not in text and world.a.project_id not in text
    assert "no project at all" not in text
    a = world.client.get("/api/v1/pipeline/dead-letters", headers=world.a.h(),
                         params={"since": "now-30d", **until()}).text
    assert "secret reason of B" not in a and "B's payload" not in a


def test_dead_letters_page_with_a_cursor(world, letters):
    seen, cursor = [], None
    for _ in range(10):
        params = {"since": "now-7d", "limit": 2, **until(),
                  **({"cursor": cursor} if cursor else {})}
        page = world.client.get("/api/v1/pipeline/dead-letters", headers=world.a.h(),
                                params=params).json()
        seen += [d["event_id"] for d in page["dead_letters"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6 and seen[-1] == "ev-a0"


@pytest.mark.parametrize(("params", "name"), [
    ({"since": "now", "until": "now-1h"}, "since"), ({"limit": 0}, "limit"),
    ({"limit": 501}, "limit"), ({"cursor": "forged"}, "cursor"), ({"until": "soon"}, "until"),
])
def test_bad_dead_letter_parameters_are_named(world, params, name):
    r = world.client.get("/api/v1/pipeline/dead-letters", headers=world.a.h(), params=params)
    assert r.status_code == 400 and r.json()["invalid_params"][0]["name"] == name


def test_dead_letter_window_defaults_to_the_last_day(world, letters):
    body = world.client.get("/api/v1/pipeline/dead-letters", headers=world.a.h()).json()
    assert body["until"].startswith(world.now.strftime("%Y-%m-%dT%H:%M"))
    since = world.now - timedelta(hours=24)
    assert body["since"].startswith(since.strftime("%Y-%m-%dT%H:%M"))
