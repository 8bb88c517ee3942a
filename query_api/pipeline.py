"""Pipeline health from the services' heartbeats, and the dead-letter cursor: pure logic.

Every long-running service writes its row of ``pipeline_heartbeats`` every
``HEARTBEAT_INTERVAL_S`` (``schemas.ops.Heartbeat``); a row older than three intervals means
the instance stopped beating (killed, hung, or cut off from PostgreSQL), so it is ``down``
whatever its last words were. A component is ``up`` while one of its instances is; an
expected component without any row is ``unknown`` (never started here, or not deployed).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from query_api.params import EPOCH
from query_api.problems import InvalidParameterError
from schemas.ops import HEARTBEAT_INTERVAL_S

# Heartbeat component names, in pipeline order (the ops-port contract of the services).
EXPECTED_COMPONENTS: Final = ("gateway", "speed_layer", "lake_writer", "billing", "query_api",
                              "alerting")
STALE_AFTER_S: Final = 3 * HEARTBEAT_INTERVAL_S
# States a service reports when it is not serving, even while its row is fresh.
DOWN_STATES: Final = frozenset({"stopped", "failed"})
# Each restart is a new instance (host:pid); older rows stay, only the newest are shown.
MAX_INSTANCES: Final = 20
_MICROSECOND: Final = timedelta(microseconds=1)


def instance_status(state: str, seconds_since_beat: float,
                    stale_after_s: float = STALE_AFTER_S) -> str:
    if seconds_since_beat > stale_after_s or state in DOWN_STATES:
        return "down"
    return "up"


def _component(name: str, rows: Sequence[Mapping[str, Any]], stale_after_s: float
               ) -> dict[str, Any]:
    instances = [{**row, "status": instance_status(row["state"], row["seconds_since_beat"],
                                                   stale_after_s)} for row in rows]
    instances.sort(key=lambda i: i["seconds_since_beat"])
    up = [i for i in instances if i["status"] == "up"]
    successes = [i["last_success_at"] for i in instances if i["last_success_at"] is not None]
    freshest: dict[str, Any] = (up or instances or [{}])[0]
    # Up: what all running instances still have to read. Down: its last words on that.
    lags = [i["lag_events"] for i in (up or [freshest]) if i.get("lag_events") is not None]
    return {
        "component": name,
        "status": ("up" if up else "down") if instances else "unknown",
        "state": freshest.get("state"),
        "instance": freshest.get("instance"),
        "seconds_since_beat": freshest.get("seconds_since_beat"),
        "lag_events": sum(lags) if lags else None,
        "last_success_at": max(successes) if successes else None,
        "instances_up": len(up),
        "instances": instances[:MAX_INSTANCES],
    }


def component_health(rows: Iterable[Mapping[str, Any]],
                     expected: Sequence[str] = EXPECTED_COMPONENTS,
                     stale_after_s: float = STALE_AFTER_S) -> list[dict[str, Any]]:
    """One entry per component: expected ones in pipeline order, then any other reported.

    ``rows`` are heartbeat rows with ``seconds_since_beat`` measured on the database clock
    (the clock that stamped ``beat_at``), so a skewed API host cannot fake an outage.
    """
    by_component: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_component.setdefault(row["component"], []).append(row)
    names = [*expected, *sorted(set(by_component) - set(expected))]
    return [_component(n, by_component.get(n, []), stale_after_s) for n in names]


def encode_dead_letter_cursor(recorded_at: datetime, dead_letter_id: int) -> str:
    us = (recorded_at - EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"{us}:{dead_letter_id}".encode()).decode()


def decode_dead_letter_cursor(text: str, name: str = "cursor") -> tuple[datetime, int]:
    """(recorded_at, dead_letter_id) of the last row of the previous page."""
    refused = InvalidParameterError(name, "not a cursor returned by this API")
    try:
        us, _, row_id = base64.urlsafe_b64decode(text.encode()).decode().partition(":")
        at, ident = EPOCH + int(us) * _MICROSECOND, int(row_id)
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
        raise refused from None
    if not 0 <= ident < 2**63 or at.year >= 3000:
        raise refused
    return at, ident
