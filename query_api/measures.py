"""What a time series measures (``value``) and how buckets are summarised (``aggregation``).

The APInalytics-compatible endpoint lets a client pick both; this module says which pairs
make sense and which of them the rollup tables can answer. Pairs they cannot (the minimum
request size, a percentile of response bytes) are answered from the raw events in the lake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from query_api.problems import InvalidParameterError


class Value(StrEnum):
    REQUESTS = "requests"
    ERRORS = "errors"
    SERVER_ERRORS = "server_errors"
    LATENCY = "latency_ms"
    REQUEST_BYTES = "request_bytes"
    RESPONSE_BYTES = "response_bytes"


VALUE_ALIASES: Final = {
    "requests": Value.REQUESTS, "count": Value.REQUESTS, "request_count": Value.REQUESTS,
    "errors": Value.ERRORS, "error_count": Value.ERRORS,
    "server_errors": Value.SERVER_ERRORS,
    "latency": Value.LATENCY, "latency_ms": Value.LATENCY, "response_time": Value.LATENCY,
    "request_bytes": Value.REQUEST_BYTES, "request_size": Value.REQUEST_BYTES,
    "bytes_in": Value.REQUEST_BYTES,
    "response_bytes": Value.RESPONSE_BYTES, "response_size": Value.RESPONSE_BYTES,
    "bytes_out": Value.RESPONSE_BYTES,
}


class AggKind(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    PERCENTILE = "percentile"


_PERCENTILE = re.compile(r"^(?:percentile|p)_?(\d{1,2})$")
_AGG_ALIASES: Final = {"avg": "mean", "average": "mean"}


@dataclass(frozen=True, slots=True)
class Aggregation:
    kind: AggKind
    percentile: int | None = None  # 1–99 when kind is PERCENTILE

    @property
    def fraction(self) -> float:
        assert self.percentile is not None  # noqa: S101 - only called for percentiles
        return self.percentile / 100

    def __str__(self) -> str:
        return f"percentile_{self.percentile}" if self.percentile else self.kind.value


def parse_value(text: str, name: str = "value") -> Value:
    value = VALUE_ALIASES.get(text.strip().lower())
    if value is None:
        raise InvalidParameterError(
            name, f"unknown value {text!r}; one of {', '.join(sorted(VALUE_ALIASES))}")
    return value


def parse_aggregation(text: str, name: str = "aggregation") -> Aggregation:
    raw = text.strip().lower()
    raw = _AGG_ALIASES.get(raw, raw)
    m = _PERCENTILE.match(raw)
    if m:
        pct = int(m.group(1))
        if not 1 <= pct <= 99:
            raise InvalidParameterError(name, "percentile must be between 1 and 99")
        return Aggregation(AggKind.PERCENTILE, pct)
    try:
        return Aggregation(AggKind(raw))
    except ValueError:
        raise InvalidParameterError(
            name, f"unknown aggregation {text!r}; count, mean, min, max, sum or percentile_X"
        ) from None


# Counters: a bucket's "value" is how many; only count/sum make sense.
COUNTER_VALUES: Final = frozenset({Value.REQUESTS, Value.ERRORS, Value.SERVER_ERRORS})


def check_pair(value: Value, agg: Aggregation) -> None:
    """Refuse pairs with no meaning (the mean of a request count)."""
    if value in COUNTER_VALUES and agg.kind not in (AggKind.COUNT, AggKind.SUM):
        raise InvalidParameterError(
            "aggregation", f"{value.value} is a count: use aggregation=count or sum")


# The metric-table measure (schemas.metric_tables) that holds each value's sum/min/max; a
# mean is the sum per request, percentiles merge the latency digest.
VALUE_MEASURES: Final[dict[Value, dict[AggKind, str]]] = {
    Value.REQUESTS: {AggKind.SUM: "request_count"},
    Value.ERRORS: {AggKind.SUM: "error_count"},
    Value.SERVER_ERRORS: {AggKind.SUM: "server_error_count"},
    Value.LATENCY: {AggKind.SUM: "latency_sum", AggKind.MIN: "latency_min",
                    AggKind.MAX: "latency_max"},
    Value.REQUEST_BYTES: {AggKind.SUM: "bytes_in"},
    Value.RESPONSE_BYTES: {AggKind.SUM: "bytes_out"},
}


def rollup_can_serve(value: Value, agg: Aggregation) -> bool:
    """Rollups keep sum/min/max/digest of latency but only sums of bytes."""
    if value in COUNTER_VALUES or value is Value.LATENCY:
        return True
    return agg.kind in (AggKind.COUNT, AggKind.SUM, AggKind.MEAN)
