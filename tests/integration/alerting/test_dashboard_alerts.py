"""The dashboard's Alerts panel in headless Chromium: what fires now (naming the fan-out
member), the range's history, and a marker on each chart at each firing and resolution."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.dashboard.conftest import browser, site  # noqa: F401 - fixtures
from tests.integration.dashboard.test_dashboard_browser import (  # noqa: F401 - fixture
    page,
    sign_in,
    wait_loaded,
)

pytestmark = pytest.mark.integration


def test_the_alerts_panel_lists_firing_members_and_history_and_marks_the_charts(
        db, page, site):  # noqa: F811 - pytest fixtures
    (rule_id,) = db.execute(
        "INSERT INTO alert_rules (project_id, name, rule_type, scope, metric, comparator,"
        " threshold, window_minutes, channel, target) VALUES (%s, 'errors per endpoint',"
        " 'threshold', 'each_endpoint', 'error_rate', '>', 0.1, 5, 'webhook',"
        " 'https://hooks.example.com/x') RETURNING rule_id", (site.project_id,)).fetchone()
    fired, resolved = site.now - timedelta(hours=3), site.now - timedelta(hours=2)
    for kind, at in (("firing", fired), ("resolved", resolved), ("firing", site.now)):
        db.execute("INSERT INTO alert_events (rule_id, project_id, kind, value, threshold,"
                   " window_start, window_end, at, delivery, member) VALUES"
                   " (%s, %s, %s, 0.3, 0.1, %s, %s, %s, 'delivered', '/orders')",
                   (rule_id, site.project_id, kind, at - timedelta(minutes=5), at, at))
    db.execute("INSERT INTO alert_state (rule_id, member, firing, value, since, evaluated_at)"
               " VALUES (%s, '/orders', true, 0.3, %s, %s)", (rule_id, site.now, site.now))
    try:
        sign_in(page, site, site.read_key)
        wait_loaded(page, "range=24h")
        firing = page.locator("#alerts-firing li")
        assert firing.count() == 1 and firing.get_attribute("data-member") == "/orders"
        assert "errors per endpoint · /orders" in firing.inner_text()
        assert page.locator("#alerts-count").inner_text() == "1 firing"
        history = page.locator("#alerts-history li")
        assert history.count() == 3
        assert [k for k in history.evaluate_all("l => l.map(i => i.dataset.kind)")] == [
            "firing", "resolved", "firing"]
        for chart in ("chart-rpm", "chart-errors", "chart-latency"):
            markers = page.locator(f"#{chart} .alert-marker")
            assert markers.count() == 3, chart
            lefts = [float(x.rstrip("%")) for x in markers.evaluate_all(
                "m => m.map(e => e.style.left)")]
            # newest first, on the chart's time axis (about 25 hourly buckets): now, 2 h and
            # 3 h ago, the first gap twice the second
            assert 90 < lefts[0] <= 100 and 80 < lefts[2] < lefts[1] < lefts[0], lefts
            assert lefts[0] - lefts[1] == pytest.approx(2 * (lefts[1] - lefts[2]), rel=0.02)
        assert page.console_errors == []
    finally:
        db.execute("DELETE FROM alert_rules WHERE rule_id = %s", (rule_id,))
