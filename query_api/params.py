"""Parsing and whitelisting of query parameters: pure functions, no I/O.

Every function raises ``InvalidParameterError`` naming the parameter, so the API answers
problem+json that points at the culprit. Identifiers that end up in SQL (group and filter
dimensions, tables) only ever come from the whitelists below.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from query_api.problems import InvalidParameterError

MINUTE: Final = 60
HOUR: Final = 3600
DAY: Final = 86400
WEEK: Final = 7 * DAY
# Weeks start on Monday: 1970-01-05 was one.
WEEK_ORIGIN: Final = datetime(1970, 1, 5, tzinfo=UTC)
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Times the API serves: Unix time from 0 to the end of year 2999 (far-off years would
# overflow datetime arithmetic when ranges are aligned, and no event is stored there).
LAST_INSTANT: Final = datetime(3000, 1, 1, tzinfo=UTC)
MAX_DURATION_S: Final = 100 * 366 * DAY


class Rollup(StrEnum):
    """The pre-aggregated tables; the value is the table name (whitelisted identifier)."""

    MINUTE = "metrics_1m"
    HOUR = "metrics_1h"
    DAY = "metrics_1d"

    @property
    def seconds(self) -> int:
        return {"metrics_1m": MINUTE, "metrics_1h": HOUR, "metrics_1d": DAY}[self.value]


# Dimensions present in the rollups (column name → kind of value).
ROLLUP_DIMENSIONS: Final = ("api_key", "endpoint", "method", "status_class")
# Dimensions only the raw events in the lake have.
LAKE_ONLY_DIMENSIONS: Final = ("status_code", "country", "function")
ALL_DIMENSIONS: Final = ROLLUP_DIMENSIONS + LAKE_ONLY_DIMENSIONS
# APInalytics names → ours.
DIMENSION_ALIASES: Final = {
    "consumer_id": "api_key", "customer_id": "api_key", "consumer": "api_key",
    "url": "endpoint", "path": "endpoint", "route": "endpoint",
    "status": "status_code",
}
INTEGER_DIMENSIONS: Final = frozenset({"status_class", "status_code"})

_DURATION = re.compile(r"(?a)^\s*(\d{1,12})\s*(s|sec|secs|second|seconds|m|min|mins|minute|minutes|"
                       r"h|hr|hour|hours|d|day|days|w|week|weeks)?\s*$", re.IGNORECASE)
_UNIT_SECONDS: Final = {"s": 1, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
_RELATIVE = re.compile(r"^now(?:\s*-\s*(\d+\s*[a-z]+))?$", re.IGNORECASE)
_NAMED_GRANULARITY: Final = {"second": 1, "minute": MINUTE, "hour": HOUR, "day": DAY,
                             "week": WEEK}
_STATUS_CLASS = re.compile(r"^([1-5])(?:xx)?$", re.IGNORECASE)
_PERIOD = re.compile(r"(?a)^(\d{4})-(\d{2})$")
_ASCII_INT = re.compile(r"(?a)^\s*\d{1,9}\s*$")
MAX_FILTER_VALUES: Final = 100
MAX_VALUE_LENGTH: Final = 512


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A half-open UTC interval ``[start, end)``."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True)
class Filters:
    """Equality filters: dimension → accepted values (OR within, AND across dimensions)."""

    values: Mapping[str, tuple[str | int, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.values)

    def dimensions(self) -> set[str]:
        return set(self.values)

    def merged(self, other: Filters) -> Filters:
        out: dict[str, tuple[str | int, ...]] = dict(self.values)
        for dim, vals in other.values.items():
            out[dim] = tuple(dict.fromkeys(out.get(dim, ()) + vals))
        return Filters(out)


NO_FILTERS: Final = Filters()


def parse_duration(text: str, name: str) -> int:
    """``"5m"``, ``"1h"``, ``"30"`` (seconds), ``"2 days"`` → seconds (> 0)."""
    m = _DURATION.match(text)
    if not m:
        raise InvalidParameterError(name, f"not a duration: {text!r} (use e.g. 30s, 5m, 1h, 1d)")
    count, unit = int(m.group(1)), (m.group(2) or "s").lower()
    seconds = count * _UNIT_SECONDS[unit[0]]
    if seconds <= 0:
        raise InvalidParameterError(name, "must be greater than zero")
    if seconds > MAX_DURATION_S:
        raise InvalidParameterError(name, "longer than 100 years")
    return seconds


def parse_window(text: str, name: str = "window") -> timedelta:
    """Realtime window: whole minutes from 1m to 60m (a bare number means minutes)."""
    seconds = int(text) * MINUTE if _ASCII_INT.match(text) else parse_duration(text, name)
    if seconds % MINUTE or not MINUTE <= seconds <= 60 * MINUTE:
        raise InvalidParameterError(name, "must be whole minutes between 1m and 60m")
    return timedelta(seconds=seconds)


def parse_instant(text: str, name: str, now: datetime) -> datetime:
    """RFC 3339 / ISO 8601, a date, Unix seconds, or ``now`` / ``now-24h``; always UTC."""
    raw = text.strip()
    rel = _RELATIVE.match(raw)
    if rel:
        if not rel.group(1):
            return now
        return max(now - timedelta(seconds=parse_duration(rel.group(1), name)), EPOCH)
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or not 0 <= seconds < 32_503_680_000:
            raise InvalidParameterError(name, "Unix time out of range")
        return EPOCH + timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidParameterError(
            name, f"not a time: {text!r} (use RFC 3339, YYYY-MM-DD, Unix seconds or now-1h)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        parsed = EPOCH - timedelta(days=1)  # year 1 with a positive offset: out of range
    if not EPOCH <= parsed < LAST_INSTANT:
        raise InvalidParameterError(name, "out of range (1970-01-01 to 2999-12-31)")
    return parsed


def parse_range(
    start: str | None,
    end: str | None,
    now: datetime,
    *,
    default: timedelta = timedelta(hours=24),
    max_days: int = 731,
) -> TimeRange:
    """``start``/``end`` with defaults (``end`` = now, ``start`` = end - default)."""
    end_at = parse_instant(end, "end", now) if end else now
    start_at = parse_instant(start, "start", now) if start else end_at - default
    if start_at >= end_at:
        raise InvalidParameterError("start", "must be before end")
    if end_at - start_at > timedelta(days=max_days):
        raise InvalidParameterError("start", f"range longer than {max_days} days")
    return TimeRange(start_at, end_at)


def auto_step(time_range: TimeRange) -> int:
    """The step ``auto`` picks: minutes up to 6 h, hours up to 14 days, then days."""
    if time_range.seconds <= 6 * HOUR:
        return MINUTE
    if time_range.seconds <= 14 * DAY:
        return HOUR
    return DAY


def parse_granularity(text: str, time_range: TimeRange, name: str = "granularity") -> int:
    """Historical granularity: ``1m``/``1h``/``1d``/``auto`` or any whole-minute duration."""
    if text.strip().lower() == "auto":
        return auto_step(time_range)
    seconds = _NAMED_GRANULARITY.get(text.strip().lower()) or parse_duration(text, name)
    if seconds % MINUTE:
        raise InvalidParameterError(name, "must be whole minutes (1m, 5m, 1h, 1d, auto)")
    return seconds


def parse_timeseries_granularity(text: str, name: str = "granularity") -> int:
    """APInalytics granularity: seconds, or second/minute/hour/day/week, or ``5m``-style."""
    raw = text.strip().lower()
    if raw in _NAMED_GRANULARITY:
        return _NAMED_GRANULARITY[raw]
    return parse_duration(raw, name)


def check_points(time_range: TimeRange, step: int, max_points: int,
                 name: str = "granularity") -> None:
    points = math.ceil(time_range.seconds / step)
    if points > max_points:
        raise InvalidParameterError(
            name, f"{points} points over this range; at most {max_points} (use a coarser one)")


def rollup_for_step(step: int) -> Rollup | None:
    """The coarsest rollup whose bucket divides the step; None when only the lake can serve."""
    for rollup in (Rollup.DAY, Rollup.HOUR, Rollup.MINUTE):
        if step % rollup.seconds == 0:
            return rollup
    return None


def floor_time(t: datetime, step: int) -> datetime:
    origin = WEEK_ORIGIN if step % WEEK == 0 else EPOCH
    offset = math.floor((t - origin).total_seconds() / step) * step
    return origin + timedelta(seconds=offset)


def align(time_range: TimeRange, step: int) -> TimeRange:
    """Widen the range outward to whole steps so the first and last buckets are complete."""
    start = floor_time(time_range.start, step)
    end = floor_time(time_range.end, step)
    if end < time_range.end:
        end += timedelta(seconds=step)
    return TimeRange(start, end)


def bucket_starts(time_range: TimeRange, step: int) -> list[datetime]:
    """Every bucket start of an aligned range (for zero-filling series)."""
    n = math.ceil(time_range.seconds / step)
    return [time_range.start + timedelta(seconds=i * step) for i in range(n)]


def canonical_dimension(text: str, name: str, allowed: Sequence[str] = ALL_DIMENSIONS) -> str:
    dim = text.strip().lower()
    dim = DIMENSION_ALIASES.get(dim, dim)
    if dim not in allowed:
        raise InvalidParameterError(name, f"unknown field {text!r}; one of {', '.join(allowed)}")
    return dim


def parse_dimension_value(dim: str, text: str, name: str) -> str | int:
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidParameterError(name, f"value longer than {MAX_VALUE_LENGTH} characters")
    if dim == "status_class":
        m = _STATUS_CLASS.match(text.strip())
        if not m:
            raise InvalidParameterError(name, f"status class must be 1xx…5xx, got {text!r}")
        return int(m.group(1))
    if dim == "status_code":
        if not _ASCII_INT.match(text) or not 100 <= int(text) <= 599:
            raise InvalidParameterError(name, f"status code must be 100–599, got {text!r}")
        return int(text)
    if dim == "method":
        return text.strip().upper()
    return text


def parse_filters(raw: Mapping[str, Iterable[str]]) -> Filters:
    """Named query parameters (``endpoint=…&method=GET``), each possibly repeated."""
    out: dict[str, tuple[str | int, ...]] = {}
    for name, texts in raw.items():
        dim = canonical_dimension(name, name)
        values = tuple(dict.fromkeys(parse_dimension_value(dim, t, name) for t in texts))
        if len(values) > MAX_FILTER_VALUES:
            raise InvalidParameterError(name, f"at most {MAX_FILTER_VALUES} values")
        if values:
            out[dim] = values
    return Filters(out)


def parse_includes(texts: Iterable[str], name: str = "include") -> Filters:
    """APInalytics ``include=field:value`` filters (repeatable)."""
    grouped: dict[str, list[str]] = {}
    for text in texts:
        fld, sep, value = text.partition(":")
        if not sep or not value:
            raise InvalidParameterError(name, f"expected field:value, got {text!r}")
        grouped.setdefault(fld, []).append(value)
    try:
        return parse_filters(grouped)
    except InvalidParameterError as exc:
        raise InvalidParameterError(name, f"{exc.name}: {exc.reason}") from None


def status_class_label(value: int) -> str:
    return f"{value}xx"


def parse_period(text: str, name: str = "period") -> tuple[datetime, datetime]:
    """``YYYY-MM`` → the month's first day and the next month's first day (UTC)."""
    m = _PERIOD.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise InvalidParameterError(name, f"expected YYYY-MM, got {text!r}")
    if not EPOCH.year <= int(m.group(1)) < LAST_INSTANT.year:
        raise InvalidParameterError(name, "year out of range (1970 to 2999)")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    return parse_period(f"{now.year:04d}-{now.month:02d}")


def parse_limit(value: int, name: str = "limit", maximum: int = 1000) -> int:
    if not 1 <= value <= maximum:
        raise InvalidParameterError(name, f"must be between 1 and {maximum}")
    return value
