from datetime import UTC, datetime

import pytest

from query_api.pipeline import (
    EXPECTED_COMPONENTS,
    STALE_AFTER_S,
    component_health,
    decode_dead_letter_cursor,
    encode_dead_letter_cursor,
    instance_status,
)
from query_api.problems import InvalidParameterError
from schemas.ops import HEARTBEAT_INTERVAL_S

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def beat(component, instance, age, state="running", lag=None, success=T0):
    return {"component": component, "instance": instance, "state": state, "started_at": T0,
            "beat_at": T0, "seconds_since_beat": age, "lag_events": lag,
            "last_success_at": success, "details": {}}


def test_a_beat_older_than_three_intervals_is_down_whatever_its_state():
    assert STALE_AFTER_S == 3 * HEARTBEAT_INTERVAL_S
    assert instance_status("running", STALE_AFTER_S - 0.1) == "up"
    assert instance_status("running", STALE_AFTER_S + 0.1) == "down"
    assert instance_status("stopped", 1.0) == "down"


def test_every_expected_component_is_listed_and_the_silent_ones_are_unknown():
    health = component_health([beat("speed_layer", "h:1", 2.0, lag=40)])
    assert [c["component"] for c in health] == list(EXPECTED_COMPONENTS)
    by = {c["component"]: c for c in health}
    assert by["speed_layer"]["status"] == "up" and by["speed_layer"]["lag_events"] == 40
    assert all(by[c]["status"] == "unknown" and by[c]["instances"] == []
               for c in EXPECTED_COMPONENTS if c != "speed_layer")


def test_a_component_is_up_while_one_instance_beats_and_sums_their_lag():
    rows = [beat("speed_layer", "old", 3600.0, state="stopped", lag=999),
            beat("speed_layer", "a", 1.0, lag=10), beat("speed_layer", "b", 4.0, lag=5),
            beat("lake_writer", "dead", 60.0, lag=7, success=None)]
    by = {c["component"]: c for c in component_health(rows)}
    speed = by["speed_layer"]
    assert (speed["status"], speed["instances_up"], speed["lag_events"]) == ("up", 2, 15)
    assert speed["instance"] == "a" and [i["status"] for i in speed["instances"]] == [
        "up", "up", "down"]
    lake = by["lake_writer"]
    assert (lake["status"], lake["lag_events"], lake["last_success_at"]) == ("down", 7, None)
    assert lake["seconds_since_beat"] == 60.0


def test_unexpected_components_are_listed_after_the_expected_ones():
    names = [c["component"] for c in component_health([beat("rollups", "r", 1.0)])]
    assert names[-1] == "rollups" and names[:-1] == list(EXPECTED_COMPONENTS)


def test_dead_letter_cursor_round_trips_to_the_microsecond():
    at = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
    assert decode_dead_letter_cursor(encode_dead_letter_cursor(at, 42)) == (at, 42)


@pytest.mark.parametrize("text", ["", "!!!", "bm9wZQ==", "OTk5OTk5OTk5OTk5OTk5OTk5OTk6MQ==",
                                  "MTox" + "A" * 10])
def test_a_forged_dead_letter_cursor_is_a_400_naming_it(text):
    with pytest.raises(InvalidParameterError) as err:
        decode_dead_letter_cursor(text)
    assert err.value.name == "cursor"
