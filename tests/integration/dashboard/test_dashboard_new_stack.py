"""A new stack's dashboard opens on a range that shows its few minutes of traffic, and says
what its per-minute figures average over."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from query_api.settings import QuerySettings
from schemas import keystore
from schemas.keys import KeyKind
from schemas.lake import LakeSettings
from schemas.metric_policies import refresh_aggregates
from schemas.settings import DatabaseSettings
from tests.integration.dashboard.conftest import serve_query_api
from tests.integration.dashboard.test_dashboard_browser import sign_in, wait_loaded
from tests.integration.query_api.fixtures import Metric, insert_metrics


@pytest.fixture(scope="module")
def new_site(stack, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """A project whose only traffic is the last 20 minutes, as on a stack just started."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        pid = f"new-{uuid.uuid4().hex[:8]}"
        keystore.create_project(conn, pid)
        read_key = keystore.create_key(conn, pid, KeyKind.READ).secret
        insert_metrics(conn, "metrics_1m", [
            Metric(now - timedelta(minutes=i), pid, "cust-1", "/v1/products/{id}", "GET", 2,
                   [10.0] * 30) for i in range(1, 21)])
        # Written in the past: the aggregates see them as after a backfill (see conftest).
        refresh_aggregates(conn, now - timedelta(days=3))
    settings = QuerySettings(database=DatabaseSettings(url=stack.database_url),
                             lake=LakeSettings(uri=str(tmp_path_factory.mktemp("new-lake"))),
                             pool_max_size=2)
    with serve_query_api(settings, "new-stack-api") as url:
        yield url, read_key


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US",
                                  timezone_id="UTC")
    yield context.new_page()
    context.close()


class _Site:
    def __init__(self, url: str) -> None:
        self.url = url


def test_a_new_stack_opens_on_the_last_hour_and_names_what_rates_average(page, new_site):
    url, read_key = new_site
    sign_in(page, _Site(url), read_key)
    wait_loaded(page, "range=1h")
    assert "range=1h" in page.url
    assert page.locator("#kpi-requests").get_attribute("data-value") == "600"
    sub = page.locator("#kpi-rpm-sub").inner_text()
    # The API starts the hour on a whole minute and the average runs to now: 60-61 min.
    assert re.match(r"average over 6[01] min; busiest minute ", sub), sub


def test_a_range_chosen_in_the_url_is_kept(page, new_site):
    url, read_key = new_site
    page.goto(url + "#range=24h")
    page.get_by_label("Read key").fill(read_key)
    page.get_by_role("button", name="Open dashboard").click()
    wait_loaded(page, "range=24h")
    time.sleep(1)  # no switch to 1 h follows
    assert page.evaluate("document.documentElement.dataset.loaded") == "range=24h"
    sub = page.locator("#kpi-rpm-sub").inner_text()
    # The API widens the range to whole hours: the average covers what it answered for.
    assert re.match(r"average over 2[45] h; busiest hour ", sub), sub
