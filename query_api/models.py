"""Response models: they document the JSON shapes in OpenAPI and keep them stable.

Routes build plain dicts (see ``shaping``); FastAPI validates them against these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Stats(BaseModel):
    """Request statistics of one group or bucket. Rates are fractions; latencies in ms."""

    requests: int
    errors: int = Field(description="Responses with status >= 400.")
    server_errors: int = Field(description="Responses with status >= 500.")
    error_rate: float
    server_error_rate: float
    latency_avg_ms: float | None
    latency_min_ms: float | None
    latency_max_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    bytes_in: int
    bytes_out: int


class RealtimeTotals(Stats):
    requests_per_minute: float = Field(description="requests / minutes elapsed in the window.")


class EndpointStats(Stats):
    method: str
    endpoint: str


class ConsumerStats(Stats):
    api_key: str


class CountryStats(Stats):
    country: str | None


class SeriesPoint(Stats):
    ts: str = Field(description="Bucket start, RFC 3339 UTC.")


class RealtimeResponse(BaseModel):
    project_id: str
    window: str
    window_seconds: int
    start: str = Field(description="Start of the oldest minute in the window.")
    end: str = Field(description="Now: the current minute is still open (partial).")
    partial: bool = True
    totals: RealtimeTotals
    status_classes: dict[str, int] = Field(description='{"2xx": n, "5xx": n, …}')
    status_codes: dict[str, int] = Field(
        description="{\"200\": n, …} from the lake: may lag the lake writer's commits.")
    methods: dict[str, int]
    top_endpoints: list[EndpointStats]
    top_consumers: list[ConsumerStats]
    series: list[SeriesPoint] = Field(description="One point per minute of the window.")


class HistoricalResponse(BaseModel):
    project_id: str
    start: str = Field(description="Range start, aligned down to the granularity.")
    end: str = Field(description="Range end (exclusive), aligned up to the granularity.")
    granularity: str
    granularity_seconds: int
    source: str = Field(description="The rollup table that served the query.")
    filters: dict[str, list[str | int]]
    totals: Stats = Field(
        description="The whole range with the same filters: exact counts, percentiles from "
        "the merged digests of every row (not an average of bucket percentiles).")
    series: list[SeriesPoint]


class EndpointsResponse(BaseModel):
    project_id: str
    start: str
    end: str
    source: str
    endpoints: list[EndpointStats]


class ConsumersResponse(BaseModel):
    project_id: str
    start: str
    end: str
    source: str
    consumers: list[ConsumerStats]


class CountriesResponse(BaseModel):
    project_id: str
    start: str
    end: str
    source: str
    countries: list[CountryStats]


class RequestItem(BaseModel):
    event_id: str
    timestamp: str
    timestamp_us: int
    method: str
    path: str
    endpoint: str
    status_code: int
    latency_ms: float
    request_bytes: int
    response_bytes: int
    api_key: str
    ip: str | None
    user_agent: str | None
    country: str | None
    function: str | None
    tags: dict[str, str]


class RequestsResponse(BaseModel):
    project_id: str
    start: str
    end: str
    requests: list[RequestItem]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page.")


class TimeseriesResponse(BaseModel):
    # Pairs as two-item lists: the tuple form's JSON schema ("items" as an array) is not
    # valid OpenAPI 3.1, and clients validating against the document would reject it.
    groups: dict[str, list[list[str | float | None]]] = Field(
        description='{group key: [[ts, value], …]}; key "total" when not grouped, '
                    "several group fields joined by \"|\".")
    start: str
    end: str
    granularity: int = Field(description="Seconds per bucket.")
    value: str
    aggregation: str
    source: str


class BillingDay(BaseModel):
    day: str
    total_requests: int
    requests_by_tier: dict[str, int]
    error_count: int
    server_error_count: int
    bytes_in: int
    bytes_out: int
    reconciliation_status: str | None = Field(
        description="ok | explained | unexplained | pending (the day is still open); "
                    "null before the day was reconciled")
    stream_count: int | None = Field(description="What the stream (metrics_1m) counted.")
    difference: int | None = Field(
        description="total_requests - stream_count = late_beyond_lateness - "
                    "duplicates_in_stream + unexplained")
    late_beyond_lateness: int | None = Field(
        description="Events later than the stream's allowed lateness: billed, not streamed.")
    duplicates_removed: int | None = Field(
        description="Copies of an event id the batch layer dropped (not billed).")
    duplicates_in_stream: int | None = Field(
        description="Of those, copies the stream counted (they came in another batch).")
    unexplained: int | None = Field(
        description="The part of the difference no known cause explains.")
    computed_at: datetime


class BillingConsumer(BaseModel):
    api_key: str
    total_requests: int
    requests_by_tier: dict[str, int]
    error_count: int
    server_error_count: int
    bytes_in: int
    bytes_out: int
    reconciliation_status: str = Field(
        description="worst day status: unexplained > explained > pending > ok; pending "
                    "also when no day was reconciled yet")
    days: list[BillingDay]


class BillingResponse(BaseModel):
    project_id: str
    period: str
    start: str
    end: str
    consumers: list[BillingConsumer]


class KeyItem(BaseModel):
    key_id: str
    kind: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class NewKeyResponse(KeyItem):
    secret: str = Field(description="Shown only in this response; store it now.")


class QuotaItem(BaseModel):
    api_key: str
    monthly_requests: int | None
    requests_per_minute: int | None
    updated_at: datetime


class QuotaWindow(BaseModel):
    limit: int | None = Field(description="null when unlimited")
    used: int
    remaining: int | None
    reset_at: str


class QuotaStatus(BaseModel):
    api_key: str
    monthly: QuotaWindow
    per_minute: QuotaWindow
    exceeded: bool


class PipelineInstance(BaseModel):
    instance: str = Field(description="host:pid of one process of the component")
    state: str = Field(description="as reported: starting, running, stopped, …")
    status: str = Field(description="up, or down when its beat is stale or it stopped")
    started_at: datetime
    beat_at: datetime
    seconds_since_beat: float
    last_success_at: datetime | None = Field(description="last successful write or commit")
    lag_events: int | None = Field(description="events behind its input (Kafka lag)")
    details: dict[str, Any]


class PipelineComponent(BaseModel):
    component: str
    status: str = Field(description="up (an instance beats), down, or unknown (no row at all)")
    state: str | None = Field(description="state of the freshest (running first) instance")
    instance: str | None
    seconds_since_beat: float | None
    lag_events: int | None = Field(
        description="sum over the instances that are up; when down, the last one reported")
    last_success_at: datetime | None
    instances_up: int
    instances: list[PipelineInstance] = Field(description="newest first, at most 20")


class PipelineHealth(BaseModel):
    status: str = Field(description="up when every expected component is up, else degraded")
    checked_at: str
    heartbeat_interval_s: float
    stale_after_s: float = Field(description="a beat older than this means down")
    components: list[PipelineComponent]


class DeadLetterCount(BaseModel):
    component: str
    reason: str
    count: int
    last_at: datetime


class DeadLetterItem(BaseModel):
    recorded_at: datetime
    component: str
    reason: str
    kafka_topic: str | None
    kafka_partition: int | None
    kafka_offset: int | None
    event_id: str | None
    payload_sample: str | None = Field(description="start of the refused record, escaped")


class DeadLettersResponse(BaseModel):
    project_id: str
    since: str
    until: str
    total: int = Field(description="dead letters of this project in [since, until)")
    counts: list[DeadLetterCount] = Field(description="by component and reason, busiest first")
    dead_letters: list[DeadLetterItem] = Field(description="newest first")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page.")
