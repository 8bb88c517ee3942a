import random

import pytest

from agent.retry import Outcome, backoff_delay, classify
from agent.transport import parse_retry_after

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("status", "outcome"), [
    (202, Outcome.DELIVERED), (200, Outcome.DELIVERED), (None, Outcome.RETRY),
    (503, Outcome.RETRY), (429, Outcome.RETRY), (500, Outcome.RETRY), (502, Outcome.RETRY),
    (400, Outcome.REFUSED), (401, Outcome.REFUSED), (403, Outcome.REFUSED),
    (413, Outcome.REFUSED), (415, Outcome.REFUSED),
])
def test_statuses_are_classified(status, outcome):
    assert classify(status) is outcome


def test_backoff_grows_exponentially_with_bounded_jitter():
    rng = random.Random(7)
    for attempt in range(8):
        step = min(30.0, 0.5 * 2**attempt)
        for _ in range(50):
            d = backoff_delay(attempt, 0.5, 30.0, rng=rng)
            assert step / 2 <= d <= step


def test_jitter_spreads_delays():
    rng = random.Random(1)
    assert len({round(backoff_delay(3, 0.5, 30.0, rng=rng), 6) for _ in range(20)}) > 10


def test_retry_after_is_a_floor():
    assert backoff_delay(0, 0.5, 30.0, retry_after_s=7) == 7
    assert backoff_delay(10, 0.5, 30.0, retry_after_s=1) >= 15


@pytest.mark.parametrize(("value", "expected"), [
    ("3", 3.0), (" 0 ", 0.0), ("-4", 0.0), (None, None), ("", None), ("soon", None),
])
def test_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_retry_after_http_date():
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now=now) == pytest.approx(10)
