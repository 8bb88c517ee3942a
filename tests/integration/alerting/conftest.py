"""Fixtures of the alerting tests: the local notification receiver, settings, the query API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from alerting.settings import AlertingSettings
from query_api.app import create_app
from query_api.settings import QuerySettings
from schemas.alerts import AlertTargetPolicy
from schemas.lake import LakeSettings
from schemas.settings import DatabaseSettings
from tests.integration.alerting.receiver import PAGERDUTY_PATH, Receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def settings(stack, receiver, db) -> AlertingSettings:
    db.execute("UPDATE alert_rules SET enabled = false")  # rounds see this test's rules only
    receiver.requests.clear()
    receiver.accepted.clear()
    receiver.refused.clear()
    return AlertingSettings(database=DatabaseSettings(url=stack.database_url),
                            pagerduty_events_url=receiver.url + PAGERDUTY_PATH,
                            targets=AlertTargetPolicy(allowed_target_prefixes=(receiver.url,),
                                                      slack_url_prefix=receiver.url + "/services/"))


@pytest.fixture
def api(stack, settings, tmp_path) -> Iterator[TestClient]:
    app = create_app(QuerySettings(database=DatabaseSettings(url=stack.database_url),
                                   lake=LakeSettings(uri=str(tmp_path)), pool_max_size=2,
                                   alert_targets=settings.targets))
    with TestClient(app) as client:
        yield client
