import csv
import io
import time
from datetime import timedelta

import pytest

from tests.integration.query_api.conftest import DAY0

API = "/api/v1/analytics"


def test_realtime_counts_the_window_including_the_open_minute(world):
    r = world.client.get(f"{API}/realtime", params={"window": "5m"}, headers=world.a.h())
    assert r.status_code == 200, r.text
    body = r.json()
    t = body["totals"]
    assert t["requests"] == 20 and t["errors"] == 4 and t["server_errors"] == 4
    assert t["error_rate"] == 0.2
    assert t["latency_avg_ms"] == pytest.approx((100 + 400 + 120) / 20)
    assert t["latency_min_ms"] == 10 and t["latency_max_ms"] == 100
    assert 10 <= t["latency_p50_ms"] <= 20 and t["latency_p99_ms"] == pytest.approx(100, rel=.05)
    assert t["requests_per_minute"] == pytest.approx(20 / 4.5, abs=1e-3)
    assert body["status_classes"] == {"2xx": 16, "5xx": 4}
    assert body["methods"] == {"GET": 10, "POST": 10}
    assert body["status_codes"] == {"201": 3}
    top = body["top_endpoints"]
    assert [(e["method"], e["endpoint"], e["requests"]) for e in top] == [
        ("GET", "/users/{id}", 10), ("POST", "/orders", 10)]
    assert top[1]["error_rate"] == 0.4
    assert [c["api_key"] for c in body["top_consumers"]] == ["cust-1", "cust-2"]
    assert len(body["series"]) == 5 and body["series"][-1]["requests"] == 10
    assert body["partial"] is True and body["window_seconds"] == 300


def test_realtime_60m_window_reaches_older_minutes(world):
    body = world.client.get(f"{API}/realtime", params={"window": "60m"},
                            headers=world.a.h()).json()
    assert body["totals"]["requests"] == 21


@pytest.mark.parametrize(("granularity", "source", "counts"), [
    ("1m", "metrics_1m", [1, 2, 3]),
    ("1h", "metrics_1h", [12, 12, 12]),
])
def test_historical_reads_the_coarsest_rollup_for_the_granularity(world, granularity, source,
                                                                  counts):
    end = DAY0.replace(hour=10, minute=3) if granularity == "1m" else DAY0.replace(hour=3)
    start = DAY0.replace(hour=10) if granularity == "1m" else DAY0
    r = world.client.get(f"{API}/historical", headers=world.a.h(), params={
        "start": start.isoformat(), "end": end.isoformat(), "granularity": granularity})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == source
    assert [p["requests"] for p in body["series"]] == counts


def test_historical_daily_and_auto_and_filters(world):
    params = {"start": "2025-06-02", "end": "2025-06-07", "granularity": "1d"}
    body = world.client.get(f"{API}/historical", headers=world.a.h(), params=params).json()
    assert body["source"] == "metrics_1d"
    # DAY0: its first three hours (36), 10:00-10:02 (6) and noon (1)
    assert [p["requests"] for p in body["series"]] == [43, 2, 3, 4, 5]
    auto = world.client.get(f"{API}/historical", headers=world.a.h(), params={
        "start": "2025-06-02T00:00:00Z", "end": "2025-06-02T03:00:00Z"}).json()
    assert auto["granularity"] == "1m" and len(auto["series"]) == 180
    filtered = world.client.get(f"{API}/historical", headers=world.a.h(), params={
        "start": "2025-06-02", "end": "2025-06-02T03:00:00Z", "granularity": "1h",
        "status_class": "5xx", "api_key": "cust-2"}).json()
    assert [p["requests"] for p in filtered["series"]] == [2, 2, 2]
    assert filtered["totals"]["requests"] == 6 and filtered["totals"]["server_error_rate"] == 1.0
    assert body["totals"]["requests"] == sum(p["requests"] for p in body["series"]) == 57
    assert [p["server_error_rate"] for p in filtered["series"]] == [1.0, 1.0, 1.0]
    assert filtered["filters"] == {"api_key": ["cust-2"], "status_class": [5]}
    one_hour = world.client.get(f"{API}/historical", headers=world.a.h(), params={
        "start": "2025-06-02", "end": "2025-06-02T01:00:00Z", "granularity": "1h",
        "api_key": "cust-1"}).json()
    p95 = one_hour["series"][0]
    assert p95["latency_p95_ms"] == 1.0 and p95["latency_avg_ms"] == 1.0
    assert one_hour["totals"]["latency_p95_ms"] == 1.0


def test_timeseries_is_apinalytics_shaped(world):
    url = f"{API}/timeseries/2025-06-02T00:00:00Z/2025-06-02T03:00:00Z/"
    r = world.client.get(url, headers=world.a.h(), params={
        "granularity": "3600", "group": "consumer_id"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["granularity"] == 3600 and body["source"] == "metrics_1h"
    assert body["groups"]["cust-1"] == [["2025-06-02T00:00:00Z", 10.0],
                                        ["2025-06-02T01:00:00Z", 10.0],
                                        ["2025-06-02T02:00:00Z", 10.0]]
    assert set(body["groups"]) == {"cust-1", "cust-2"}
    p = world.client.get(url, headers=world.a.h(), params={
        "granularity": "hour", "value": "response_time", "aggregation": "percentile_50",
        "include": "consumer_id:cust-2"}).json()
    assert [v for _, v in p["groups"]["total"]] == [1.0, 2.0, 3.0]


def test_timeseries_below_a_minute_and_lake_fields_come_from_the_lake(world):
    url = f"{API}/timeseries/2025-06-02T10:00:00Z/2025-06-02T10:02:00Z/"
    body = world.client.get(url, headers=world.a.h(), params={
        "granularity": "30", "group": "status_code"}).json()
    assert body["source"] == "lake"
    assert body["groups"]["200"][:2] == [["2025-06-02T10:00:00Z", 2.0],
                                         ["2025-06-02T10:00:30Z", 2.0]]
    assert sum(v for _, v in body["groups"]["503"]) == 4
    mx = world.client.get(url, headers=world.a.h(), params={
        "granularity": "minute", "value": "latency", "aggregation": "max",
        "include": "country:FR"}).json()
    assert mx["source"] == "lake" and mx["groups"]["total"] == [["2025-06-02T10:00:00Z", 3.0]]


def test_endpoints_consumers_countries(world):
    params = {"start": "2025-06-02", "end": "2025-06-02T03:00:00Z"}
    ep = world.client.get(f"{API}/endpoints", headers=world.a.h(), params=params).json()
    assert ep["source"] == "metrics_1m"  # 3 h range: minutes
    assert [(e["endpoint"], e["requests"]) for e in ep["endpoints"]] == [("/users/{id}", 36)]
    ep = world.client.get(f"{API}/endpoints", headers=world.a.h(),
                          params={"start": "2025-06-02", "end": "2025-06-03"}).json()
    assert ep["source"] == "metrics_1h"
    assert ep["endpoints"][0]["requests"] == 43 and ep["endpoints"][0]["errors"] == 6
    cons = world.client.get(f"{API}/consumers", headers=world.a.h(),
                            params={"start": "2025-06-02", "end": "2025-06-03"}).json()
    assert {c["api_key"]: c["requests"] for c in cons["consumers"]} == {"cust-1": 37,
                                                                       "cust-2": 6}
    co = world.client.get(f"{API}/countries", headers=world.a.h(),
                          params={"start": "2025-06-02", "end": "2025-06-03"}).json()
    assert {c["country"]: c["requests"] for c in co["countries"]} == {"FR": 4, "US": 8}


def test_requests_drill_down_pages_newest_first(world):
    params = {"start": "2025-06-02", "end": "2025-06-03", "limit": 5}
    page = world.client.get(f"{API}/requests", headers=world.a.h(), params=params).json()
    assert [r["event_id"] for r in page["requests"]] == ["a11", "a10", "a9", "a8", "a7"]
    assert page["requests"][0]["tags"] == {"plan": "pro"}
    assert page["requests"][0]["timestamp"] == "2025-06-02T10:01:50Z"
    seen = [r["event_id"] for r in page["requests"]]
    while page["next_cursor"]:
        page = world.client.get(f"{API}/requests", headers=world.a.h(),
                                params={**params, "cursor": page["next_cursor"]}).json()
        seen += [r["event_id"] for r in page["requests"]]
    assert seen == [f"a{i}" for i in range(11, -1, -1)]
    errs = world.client.get(f"{API}/requests", headers=world.a.h(),
                            params={**params, "status_code": "503"}).json()
    assert {r["status_code"] for r in errs["requests"]} == {503}


def test_csv_exports_are_defused(world):
    r = world.client.get(f"{API}/requests", headers={**world.a.h(), "Accept": "text/csv"},
                         params={"start": "2025-06-02", "end": "2025-06-03", "limit": 2})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["event_id"] == "a11" and rows[1]["api_key"] == "'=HYPERLINK(\"x\")"
    h = world.client.get(f"{API}/historical", headers=world.a.h(), params={
        "start": "2025-06-02", "end": "2025-06-07", "granularity": "1d", "format": "csv"})
    table = list(csv.DictReader(io.StringIO(h.text)))
    assert [row["requests"] for row in table] == ["43", "2", "3", "4", "5"]
    assert table[0]["ts"] == "2025-06-02T00:00:00Z"


@pytest.mark.parametrize(("path", "params", "name"), [
    ("/realtime", {"window": "61m"}, "window"),
    ("/historical", {"granularity": "45s"}, "granularity"),
    ("/historical", {"start": "tomorrow-ish"}, "start"),
    ("/historical", {"status_class": "9xx"}, "status_class"),
    ("/historical", {"start": "now-30d", "granularity": "1m"}, "granularity"),
    ("/historical", {"start": "2020-01-01"}, "start"),
    ("/endpoints", {"limit": "0"}, "limit"),
    ("/timeseries/now-1h/now/", {"aggregation": "median-ish"}, "aggregation"),
    ("/timeseries/now-1h/now/", {"group": "password"}, "group"),
    ("/timeseries/now-1h/now/", {"include": "secret:1"}, "include"),
    ("/requests", {"cursor": "!!!"}, "cursor"),
])
def test_bad_parameters_answer_problem_json_naming_them(world, path, params, name):
    r = world.client.get(API + path, headers=world.a.h(), params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [p["name"] for p in r.json()["invalid_params"]] == [name]


def test_every_aggregate_of_a_width_gives_a_range_the_same_totals(world, stack):
    """Project totals, per endpoint, per consumer and the full series agree, level by level.

    Covers the fixed days (materialized) and the last hour (open buckets, real-time).
    """
    import psycopg

    from schemas.metric_tables import ALL_TABLES

    ranges = [(DAY0, DAY0 + timedelta(days=7)),
              (world.now - timedelta(hours=1), world.now + timedelta(minutes=1))]
    measures = ("sum(request_count)", "sum(error_count)", "sum(server_error_count)",
                "sum(bytes_in)", "sum(bytes_out)", "min(latency_min)", "max(latency_max)")
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        for seconds in (60, 3600, 86400):
            tables = [t.name for t in ALL_TABLES if t.seconds == seconds]
            assert f"metrics_project_{tables[0][-2:]}" in tables
            for start, end in ranges:
                if seconds == 86400:
                    start = start.replace(hour=0, minute=0, second=0)
                    end = (end + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                # A background refresh finishing between two of these reads can move a
                # watermark under one of them for that instant (seen once in a full run):
                # a difference must not outlive a re-read a second later.
                for _ in range(3):
                    answers = {t: conn.execute(
                        f"SELECT {', '.join(measures)} FROM {t} WHERE project_id = %s"  # noqa: S608
                        " AND bucket >= %s AND bucket < %s",
                        (world.a.project_id, start, end)).fetchone() for t in tables}
                    if len(set(answers.values())) == 1:
                        break
                    time.sleep(1.0)
                assert answers[tables[0]][0], (seconds, start)
                assert len(set(answers.values())) == 1, (seconds, start, answers)


def test_historical_reads_the_project_totals_and_agrees_with_the_breakdowns(world):
    params = {"start": "2025-06-02", "end": "2025-06-03"}
    hist = world.client.get(f"{API}/historical", headers=world.a.h(),
                            params={**params, "granularity": "1h"}).json()
    ep = world.client.get(f"{API}/endpoints", headers=world.a.h(), params=params).json()
    cons = world.client.get(f"{API}/consumers", headers=world.a.h(), params=params).json()
    total = hist["totals"]["requests"]
    assert total == sum(p["requests"] for p in hist["series"]) == 43
    assert total == sum(e["requests"] for e in ep["endpoints"])
    assert total == sum(c["requests"] for c in cons["consumers"])
    assert hist["totals"]["bytes_out"] == sum(e["bytes_out"] for e in ep["endpoints"])


def test_unfiltered_series_and_totals_read_the_one_series_per_project_level():
    from query_api.params import Rollup
    from query_api.repository import _source

    assert [_source(r, []).as_string(None) for r in Rollup] == [
        '"metrics_project_1m"', '"metrics_project_1h"', '"metrics_project_1d"']
    assert _source(Rollup.HOUR, ["endpoint"]).as_string(None) == '"metrics_endpoints_1h"'
    assert _source(Rollup.HOUR, ["api_key"]).as_string(None) == '"metrics_consumers_1h"'


@pytest.mark.parametrize("dims", [["api_key"], ["api_key", "endpoint"]])
def test_consumer_breakdowns_ranked_before_merging_digests_match_the_full_merge(world, stack,
                                                                              dims):
    import psycopg

    from query_api import repository as repo
    from query_api.params import Rollup, TimeRange

    rng = TimeRange(DAY0, DAY0 + timedelta(days=7))
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        for table in (Rollup.HOUR, Rollup.DAY):
            every = repo.breakdown(conn, table, world.a.project_id, rng, dims)
            assert len(every) >= 2 and all(r["percentiles"] for r in every)
            for limit in (1, 2, len(every) + 5):
                top = repo.breakdown(conn, table, world.a.project_id, rng, dims, limit=limit)
                assert len(top) == min(limit, len(every))
                for got, want in zip(top, every, strict=False):
                    assert {k: v for k, v in got.items() if k != "percentiles"} == {
                        k: v for k, v in want.items() if k != "percentiles"}
                    assert got["percentiles"] == pytest.approx(want["percentiles"], rel=0.02)
