"""The dashboard in headless Chromium agrees with the API and with the seeded traffic, and
shows a stopped layer and the project's dead letters in its Pipeline panel."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.types.json import Jsonb

from schemas.dead_letters import DeadLetter, record_dead_letters

OUTPUT = Path(__file__).resolve().parents[3] / "test-output"
LOAD_TIMEOUT_MS = 15_000


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1680, "height": 1050}, color_scheme="dark",
                                  locale="en-US", timezone_id="UTC")
    pg = context.new_page()
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    pg.requested = []  # type: ignore[attr-defined]
    pg.on("request", lambda r: pg.requested.append(r.url))
    yield pg
    context.close()


def wait_loaded(page, marker: str) -> None:
    """Wait until a full load whose range/filters contain ``marker`` has been rendered."""
    page.wait_for_function(
        "m => document.documentElement.dataset.state === 'ready'"
        " && (document.documentElement.dataset.loaded || '').includes(m)",
        arg=marker, timeout=LOAD_TIMEOUT_MS)


def last_url(page, route: str) -> str:
    urls = [u for u in page.requested if f"/api/v1/analytics/{route}" in u]
    assert urls, f"the page never called {route}"
    return urls[-1]


def figure(page, element_id: str) -> tuple[float, str]:
    el = page.locator(f"#{element_id}")
    return float(el.get_attribute("data-value")), el.inner_text()


def pct_text(rate: float) -> str:
    """How the page prints a rate: two decimals below 1 %, one above."""
    p = 100 * rate
    return "0%" if p == 0 else f"{p:.2f}%" if p < 1 else f"{p:.1f}%"


def check_against_api(page, site, expected: dict[str, int]) -> dict:
    """KPIs, top endpoint, status and countries equal the API's answers for the same URLs."""
    hist = site.api(last_url(page, "historical"))
    requests = sum(p["requests"] for p in hist["series"])
    errors = sum(p["errors"] for p in hist["series"])
    server_errors = sum(p["server_errors"] for p in hist["series"])
    assert (requests, errors, server_errors) == (
        expected["requests"], expected["errors"], expected["server_errors"])

    shown, text = figure(page, "kpi-requests")
    assert shown == requests and text == f"{requests:,}"
    shown, text = figure(page, "kpi-error-rate")
    assert shown == pytest.approx(errors / requests)
    assert text == pct_text(errors / requests)
    assert figure(page, "kpi-5xx-rate")[0] == pytest.approx(server_errors / requests)

    endpoints = site.api(last_url(page, "endpoints"))["endpoints"]
    rows = page.locator("#endpoints tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.method, r.dataset.endpoint,"
        " Number(r.querySelector('[data-col=requests]').dataset.value)])")
    # the same rows as the API (the table may be sorted by another column)
    assert sorted(rows) == sorted([e["method"], e["endpoint"], e["requests"]] for e in endpoints)
    assert sum(e["requests"] for e in endpoints) == requests

    classes = site.api(last_url(page, "timeseries"))["groups"]
    for cls, points in classes.items():
        count = sum(v for _, v in points)
        if count:
            cell = page.locator(f"#status li[data-class='{cls}'] .legend-count")
            assert int(cell.get_attribute("data-value")) == count

    consumers = site.api(last_url(page, "consumers"))["consumers"]
    shown_keys = page.locator("#consumers tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.apiKey)")
    assert shown_keys == [c["api_key"] for c in consumers]

    countries = site.api(last_url(page, "countries"))["countries"]
    shown_countries = page.locator("#countries li").evaluate_all(
        "items => items.map(i => [i.dataset.country, Number(i.querySelector('.bar-count')"
        ".dataset.value)])")
    assert shown_countries == [[c["country"], c["requests"]] for c in countries]
    return {"endpoints": endpoints, "consumers": consumers}


def sign_in(page, site, key: str) -> None:
    page.goto(site.url)
    page.get_by_label("Read key").fill(key)
    page.get_by_role("button", name="Open dashboard").click()


def test_wrong_key_shows_a_clear_message(page, site):
    sign_in(page, site, "tsk_read_not-a-real-key")
    error = page.locator("#login-error")
    error.wait_for(state="visible")
    page.wait_for_function("() => document.getElementById('login-error').textContent.length > 0")
    assert "not accepted" in error.inner_text()
    assert page.locator("#app").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    # the browser logs the refused fetch itself; nothing else may go wrong
    assert [e for e in page.console_errors if "401" not in e] == []


def test_dashboard_matches_the_api_through_range_changes_and_filters(page, site):
    sign_in(page, site, site.read_key)
    wait_loaded(page, "range=24h")
    assert page.locator("#project").inner_text() == site.project_id
    check_against_api(page, site, site.expected(timedelta(hours=24)))
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "dashboard.png"), full_page=True)

    # a range change reloads every panel for the new range
    for name, span in (("7d", timedelta(days=7)), ("30d", timedelta(days=30))):
        page.locator(f"#ranges button[data-range='{name}']").click()
        wait_loaded(page, f"range={name}")
        check_against_api(page, site, site.expected(span))
    page.locator("#ranges button[data-range='1h']").click()
    wait_loaded(page, "range=1h")
    lists = check_against_api(page, site, site.expected(timedelta(hours=1)))
    assert lists["endpoints"][0]["endpoint"] == "/users/{id}"
    assert page.locator("#endpoints tbody tr").first.get_attribute("data-endpoint") == \
        "/users/{id}"  # busiest first by default

    # the endpoints table sorts by p95 (client side, no reload)
    page.locator("#endpoints th[data-sort='latency_p95_ms'] button").click()
    assert page.locator("#endpoints th[data-sort='latency_p95_ms']").get_attribute(
        "aria-sort") == "descending"
    assert page.locator("#endpoints tbody tr").first.get_attribute("data-endpoint") == "/orders"

    # clicking an endpoint filters everything, shown as a removable chip
    page.locator("#endpoints tr[data-endpoint='/orders'] button.rowlink").click()
    wait_loaded(page, "endpoint=" + quote("/orders", safe=""))
    assert "endpoint=%2Forders" in last_url(page, "historical")
    chip = page.locator("#chips .chip")
    assert chip.count() == 1 and "POST /orders" in chip.inner_text()
    filtered = site.expected(timedelta(hours=1), endpoint="/orders", method="POST")
    lists = check_against_api(page, site, filtered)
    assert figure(page, "kpi-error-rate")[1] == "25.0%"
    assert [c["api_key"] for c in lists["consumers"]] == ["cust-beta"]
    page.screenshot(path=str(OUTPUT / "dashboard-filtered.png"), full_page=True)
    assert page.locator("#countries li").evaluate_all(
        "items => items.map(i => i.dataset.country)") == ["US"]

    # a consumer filter adds a second chip; removing chips brings the whole project back
    page.locator("#chips .chip-x").click()
    wait_loaded(page, "range=1h")
    page.wait_for_function("() => !location.hash.includes('endpoint')")
    page.locator("#consumers tr[data-api-key='cust-alpha'] button.rowlink").click()
    wait_loaded(page, "api_key=cust-alpha")
    check_against_api(page, site, site.expected(timedelta(hours=1), api_key="cust-alpha"))
    page.locator("#endpoints tr[data-endpoint='/health'] button.rowlink").click()
    wait_loaded(page, "endpoint=" + quote("/health", safe=""))
    assert page.locator("#chips .chip").count() == 2
    check_against_api(page, site, site.expected(timedelta(hours=1), api_key="cust-alpha",
                                                endpoint="/health"))
    for _ in range(2):
        page.locator("#chips .chip-x").first.click()
    page.wait_for_function("() => !/endpoint|api_key/.test(location.hash)")
    wait_loaded(page, "range=1h")
    check_against_api(page, site, site.expected(timedelta(hours=1)))

    # a custom range (the browser's time zone is UTC): only the hour two hours ago
    page.locator("#ranges button[data-range='custom']").click()
    local = "%Y-%m-%dT%H:%M"
    page.get_by_label("From", exact=True).fill((site.now - timedelta(minutes=150)).strftime(local))
    page.get_by_label("To", exact=True).fill((site.now - timedelta(minutes=90)).strftime(local))
    page.get_by_role("button", name="Apply").click()
    wait_loaded(page, "range=custom")
    check_against_api(page, site, site.expected(timedelta(minutes=150), timedelta(minutes=90)))

    # a failing API call is shown, the other panels still render
    page.route("**/api/v1/analytics/countries*", lambda route: route.fulfill(
        status=503, content_type="application/problem+json",
        body='{"title": "Service Unavailable", "status": 503, "detail": "lake offline"}'))
    page.locator("#ranges button[data-range='24h']").click()
    page.wait_for_function("() => document.documentElement.dataset.state === 'error'")
    assert "Countries (503): lake offline" in page.locator("#error").inner_text()
    assert figure(page, "kpi-requests")[0] == site.expected(timedelta(hours=24))["requests"]
    page.unroute("**/api/v1/analytics/countries*")

    # the live strip shows the realtime route's figures
    assert re.fullmatch(r"[\d.,]+", page.locator("#live-rpm").inner_text())
    assert [e for e in page.console_errors if "503" not in e] == []


@pytest.fixture
def stopped_speed_layer(db, site):
    """Heartbeats: the speed layer fell silent a minute ago, the lake writer beats, alerting
    never reported; and three dead letters of this project in the last hour."""
    controlled = ["speed_layer", "lake_writer", "alerting"]
    saved = db.execute("DELETE FROM pipeline_heartbeats WHERE component = ANY(%s) RETURNING *",
                       (controlled,)).fetchall()
    db.execute(
        "INSERT INTO pipeline_heartbeats (component, instance, state, started_at, beat_at,"
        " last_success_at, lag_events) VALUES"
        " ('speed_layer', 'box:1', 'running', now() - interval '2 hours',"
        "  now() - interval '1 minute', now() - interval '70 seconds', 4200),"
        " ('lake_writer', 'box:2', 'running', now() - interval '2 hours', now(), now(), 17)")
    record_dead_letters(db, [DeadLetter("speed_layer", "endpoint: contains U+0000",
                                        project_id=site.project_id, topic="dash.dlq",
                                        partition=0, offset=i) for i in range(3)])
    yield
    db.execute("DELETE FROM dead_letters WHERE kafka_topic = 'dash.dlq'")
    db.execute("DELETE FROM pipeline_heartbeats WHERE component = ANY(%s)", (controlled,))
    with db.cursor() as cur:
        cur.executemany("INSERT INTO pipeline_heartbeats VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING", [(*r[:7], Jsonb(r[7])) for r in saved])


def test_pipeline_panel_shows_a_stopped_layer_and_the_projects_dead_letters(
        page, site, stopped_speed_layer):
    sign_in(page, site, site.read_key)
    wait_loaded(page, "range=24h")
    items = page.locator("#pipeline li")
    shown = dict(items.evaluate_all("items => items.map(i => [i.dataset.component,"
                                    " i.dataset.status])"))
    assert shown["speed_layer"] == "down" and shown["lake_writer"] == "up"
    assert shown["alerting"] == "unknown" and shown["query_api"] == "up"
    assert list(shown)[:6] == ["gateway", "speed_layer", "lake_writer", "billing", "query_api",
                               "alerting"]
    speed = page.locator("#pipeline li[data-component='speed_layer']")
    assert "down" in speed.inner_text().lower() and "4,200 events" in speed.inner_text()
    assert re.search(r"heartbeat (6\d|7\d) s ago", speed.inner_text())
    lake = page.locator("#pipeline li[data-component='lake_writer']")
    assert lake.locator(".p-lag").get_attribute("data-value") == "17"
    assert "never reported" in page.locator(
        "#pipeline li[data-component='alerting']").inner_text()
    alert = page.locator("#pipeline-alert")
    # other tests of the session may have left stopped components too; the speed layer
    # must be among those named
    assert alert.is_visible() and "Speed layer" in alert.inner_text().split(" down")[0]

    dead = page.locator("#dead-letters")
    assert dead.get_attribute("data-value") == "3" and "3 records" in dead.inner_text()
    assert "endpoint: contains U+0000 × 3" in page.locator("#dead-letter-reasons").inner_text()
    page.screenshot(path=str(OUTPUT / "dashboard-pipeline.png"), full_page=True)
    assert page.console_errors == []
