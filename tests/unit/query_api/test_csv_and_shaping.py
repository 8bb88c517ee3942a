import csv
import io
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from query_api.csv import render_csv, safe_cell
from query_api.params import TimeRange, parse_window
from query_api.problems import install_problem_handlers
from query_api.shaping import filled_series, stats, value_groups


def test_formula_cells_are_defused_and_numbers_kept():
    for text in ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]:
        assert safe_cell(text) == "'" + text
    assert safe_cell(-5) == -5
    assert safe_cell(None) == ""
    assert safe_cell("/users/{id}") == "/users/{id}"


def test_csv_round_trips_through_a_reader_with_quoting():
    body = render_csv(["endpoint", "requests"], [{"endpoint": '=cmd|"/c calc"!A0',
                                                  "requests": 3}, {"endpoint": "a,b"}])
    rows = list(csv.reader(io.StringIO(body)))
    assert rows == [["endpoint", "requests"], ["'=cmd|\"/c calc\"!A0", "3"], ["a,b", ""]]


def test_stats_derive_rates_and_hide_latency_without_requests():
    s = stats({"requests": 4, "errors": 1, "server_errors": 1, "latency_sum": 40.0,
               "latency_min": 5, "latency_max": 20, "percentiles": [9, 19, 20],
               "bytes_in": 1, "bytes_out": 2})
    assert s["error_rate"] == 0.25 and s["latency_avg_ms"] == 10.0 and s["latency_p95_ms"] == 19
    empty = stats({})
    assert empty["requests"] == 0 and empty["latency_p99_ms"] is None and empty["error_rate"] == 0


def test_series_are_zero_filled_per_bucket():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rng = TimeRange(start, start + timedelta(minutes=3))
    rows = [{"ts": start + timedelta(minutes=1), "requests": 5, "latency_sum": 5.0}]
    series = filled_series(rows, rng, 60)
    assert [p["requests"] for p in series] == [0, 5, 0]
    assert series[0]["ts"] == "2026-01-01T00:00:00Z"
    groups = value_groups([{"ts": start, "api_key": "k", "value": 2.0}], ["api_key"], rng, 60,
                          fill_zero=True)
    assert groups == {"k": [["2026-01-01T00:00:00Z", 2.0], ["2026-01-01T00:01:00Z", 0.0],
                            ["2026-01-01T00:02:00Z", 0.0]]}
    assert value_groups([], [], rng, 60, fill_zero=False) == {}


def test_errors_are_problem_json_naming_the_parameter():
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/w")
    def w(window: str = "5m", n: int = Query(1, ge=1)) -> dict[str, int]:
        return {"s": int(parse_window(window).total_seconds())}

    client = TestClient(app)
    r = client.get("/w", params={"window": "2h"})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["invalid_params"][0]["name"] == "window"
    r = client.get("/w", params={"n": "0"})
    assert r.status_code == 400 and r.json()["invalid_params"][0]["name"] == "n"
    assert client.get("/nope").headers["content-type"] == "application/problem+json"
