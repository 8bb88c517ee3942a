"""The lake contract, round trip: the lake writer writes, the query API reads, for project ids
of any text, on a local folder and on S3 (moto server), with duplicates in the lake.

Every figure is checked against the distinct events produced (``truth_of``) and against
billing's own reading of the same lake, so a reader that misses a folder or counts a
retried batch twice fails.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from batch_layer.billing import compute_usage, connect, register_day
from batch_layer.lake import open_lake
from query_api.app import create_app
from query_api.deps import get_now
from query_api.settings import QuerySettings
from schemas import keystore
from schemas.keys import KeyKind
from schemas.lake import project_dir, project_from_dir
from schemas.settings import DatabaseSettings
from tests.integration.batch_layer.conftest import (
    S3Server,
    drain,
    produce,
    s3_server,
    writer_settings,
)
from tests.unit.batch_layer.fixtures import DAY, DAY_START_US, make_events, truth_of

__all__ = ["s3_server"]  # the moto server fixture, shared with the batch layer's tests

AWKWARD = ("acme corp", "team:prod@eu/west", "ünïcødé-🚀", "50%..", "a?b*[c]", "_x", ".hidden")
DAY_START = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)


@pytest.fixture(params=["local", "s3"])
def lake_at(request, tmp_path) -> tuple[str, S3Server | None]:
    """A lake URI, and the S3 server it is on (None for a local folder)."""
    if request.param == "local":
        return str(tmp_path / "lake"), None
    server = request.getfixturevalue("s3_server")
    return f"s3://{server.bucket}/contract-{uuid.uuid4().hex[:8]}", server


def test_folder_names_round_trip_any_project_id():
    for pid in AWKWARD:
        name = project_dir(pid)
        assert "/" not in name and "*" not in name and "?" not in name and "[" not in name
        assert project_from_dir(name) == pid


def test_writer_to_query_api_round_trip_counts_each_event_once(stack, fresh_topic, lake_at):
    topic = fresh_topic(partitions=2)
    # One day, every awkward project; the last hour also seen by the realtime view.
    events = make_events(1400, seed=7, projects=AWKWARD, keys=4,
                         day_start_us=DAY_START_US)
    produced = produce(stack.kafka_bootstrap, topic, events, batch_size=50,
                       duplicate_rate=0.25, seed=3)
    assert produced.duplicated_batches > 0  # copies of events are in the lake
    lake_uri, server = lake_at
    settings = writer_settings(stack, topic, lake_uri, s3=server)
    lake = open_lake(settings)
    drain(settings, lake, 2)
    truth = truth_of(events)

    # Billing's reading of the same lake: the reference the analytics must agree with.
    con = connect(1, "1GB")
    register_day(con, lake, DAY)
    billed = {(r.project_id, r.api_key): r for r in compute_usage(con, DAY, {}, "default")}
    assert sum(r.duplicates_removed for r in billed.values()) == len(produced.duplicated_events)

    keys = {}
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        for pid in AWKWARD:
            keystore.create_project(conn, pid)
            keys[pid] = keystore.create_key(conn, pid, KeyKind.READ).secret
    now = DAY_START + timedelta(hours=23, minutes=59, seconds=59)
    app = create_app(QuerySettings(database=DatabaseSettings(url=stack.database_url),
                                   lake=settings.lake, pool_max_size=2))
    app.dependency_overrides[get_now] = lambda: now
    rng = {"start": DAY_START.isoformat(), "end": (DAY_START + timedelta(days=1)).isoformat()}
    with TestClient(app) as client:
        for pid in AWKWARD:
            h = {"Authorization": f"Bearer {keys[pid]}"}
            mine = {e.event_id: e for e in events if e.project_id == pid}
            per_key = {k: v for (p, k, _), v in truth.total.items() if p == pid}
            assert per_key == {k: r.total_requests for (p, k), r in billed.items() if p == pid}

            ids, cursor = [], None
            while True:
                page = client.get("/api/v1/analytics/requests",
                                  params={**rng, "limit": 1000, **({"cursor": cursor}
                                                                   if cursor else {})},
                                  headers=h)
                assert page.status_code == 200, page.text
                ids += [r["event_id"] for r in page.json()["requests"]]
                cursor = page.json()["next_cursor"]
                if not cursor:
                    break
            assert sorted(ids) == sorted(mine), pid  # every event, each once

            countries = client.get("/api/v1/analytics/countries", params=rng, headers=h)
            assert countries.status_code == 200, countries.text
            got = {c["country"]: c["requests"] for c in countries.json()["countries"]}
            assert got == Counter(e.country for e in mine.values()), pid

            series = client.get(
                f"/api/v1/analytics/timeseries/{rng['start']}/{rng['end']}/",
                params={"granularity": "day", "group": "status_code"}, headers=h)
            assert series.status_code == 200, series.text
            assert series.json()["source"] == "lake"
            by_code = {k: sum(v for _, v in points)
                       for k, points in series.json()["groups"].items()}
            assert by_code == {str(c): n for c, n in
                               Counter(e.status_code for e in mine.values()).items()}, pid

            realtime = client.get("/api/v1/analytics/realtime", params={"window": "60m"},
                                  headers=h)
            assert realtime.status_code == 200, realtime.text
            start_us = int((now - timedelta(minutes=59)).replace(second=0).timestamp() * 1e6)
            recent = Counter(e.status_code for e in mine.values() if e.timestamp_us >= start_us)
            assert recent, pid  # the window holds events of this project
            assert realtime.json()["status_codes"] == {str(c): n for c, n in recent.items()}

