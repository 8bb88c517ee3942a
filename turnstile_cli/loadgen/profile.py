"""What traffic to generate: the endpoint catalogue and the knobs of one run.

The defaults describe a plausible API: a dozen routes with ids in their paths, request
volume falling off by rank (Zipf), one slow export endpoint, a few consumers sending most of
the traffic, a low error rate with short 5xx bursts. Everything random comes from ``seed``,
so a ``TrafficSpec`` names its events exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IdKind = Literal["int", "uuid"]


@dataclass(frozen=True)
class Endpoint:
    """One route: its template, how its ids look, its latency and response size."""

    method: str
    template: str  # ``/v1/users/{id}``: what the gateway derives from the raw path
    id_kind: IdKind | None
    median_ms: float
    sigma: float  # of the lognormal latency
    response_bytes: int  # median response size of a success
    error_rate_4xx: float = 0.03
    error_rate_5xx: float = 0.004


DEFAULT_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/v1/products/{id}", "int", 8, 0.5, 2_500),
    Endpoint("GET", "/v1/users/{id}", "int", 12, 0.5, 1_500),
    Endpoint("GET", "/v1/products", None, 20, 0.6, 8_000),
    Endpoint("GET", "/v1/search", None, 45, 0.7, 12_000),
    Endpoint("GET", "/v1/orders/{id}", "uuid", 10, 0.5, 1_800),
    Endpoint("POST", "/v1/orders", None, 80, 0.6, 800, error_rate_4xx=0.06),
    Endpoint("PUT", "/v1/users/{id}/settings", "int", 25, 0.5, 400),
    Endpoint("GET", "/v1/health", None, 1, 0.3, 20, error_rate_4xx=0.0),
    Endpoint("DELETE", "/v1/sessions/{id}", "uuid", 6, 0.4, 0),
    Endpoint("POST", "/v1/checkout", None, 150, 0.6, 600, error_rate_4xx=0.05),
    Endpoint("GET", "/v1/reports/{id}/export", "int", 900, 0.8, 250_000),  # the slow one
    Endpoint("GET", "/v1/invoices/{id}", "uuid", 15, 0.5, 3_000),
)

COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 0.34), ("DE", 0.12), ("GB", 0.10), ("IN", 0.09), ("FR", 0.07), ("BR", 0.06),
    ("JP", 0.06), ("CA", 0.05), ("NL", 0.04), ("AU", 0.03), ("SE", 0.02), ("NG", 0.02),
)
USER_AGENTS: tuple[str, ...] = (
    "okhttp/4.12.0", "python-requests/2.32.3", "Go-http-client/2.0", "axios/1.7.7",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
)


@dataclass(frozen=True)
class TrafficSpec:
    """One run of generated traffic; the same spec always yields the same bytes."""

    seed: int = 1
    events: int = 100_000
    start_us: int = 1_764_576_000_000_000  # 2025-12-01T08:00:00Z; the CLI defaults to now
    # Event-time density: timestamps advance by this many events per second on average.
    events_per_s: float = 1_000.0
    projects: tuple[str, ...] = ("loadgen",)
    consumers: int = 200
    consumer_skew: float = 1.2  # Zipf exponent: a few consumers send most requests
    endpoints: tuple[Endpoint, ...] = DEFAULT_ENDPOINTS
    endpoint_skew: float = 1.0
    batch_size: int = 1_000
    # Batches sent a second time with the same batch id and body (a retried batch).
    duplicate_rate: float = 0.0
    # Events sent late; ``beyond_share`` of them older than the speed layer's lateness.
    late_rate: float = 0.0
    beyond_share: float = 0.5
    allowed_lateness_s: float = 300.0
    # Requests in flight at once: the lateness plan depends on how far sends may overtake.
    in_flight: int = 4
    error_bursts: int = 2
    # Prefix of event and batch ids; two runs with the same seed share ids unless it differs.
    run_id: str = ""
    send_endpoint: bool = False  # False: the gateway derives the template from the path

    def __post_init__(self) -> None:
        problems = []
        if self.events < 1:
            problems.append("events must be >= 1")
        if self.events_per_s <= 0:
            problems.append("events_per_s must be > 0")
        if not self.projects:
            problems.append("projects must name at least one project")
        if self.consumers < 1:
            problems.append("consumers must be >= 1")
        if not 1 <= self.batch_size <= 10_000:
            problems.append("batch_size must be 1..10000 (the gateway's limit)")
        for name in ("duplicate_rate", "late_rate", "beyond_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be within 0..1")
        if self.in_flight < 1:
            problems.append("in_flight must be >= 1")
        if self.allowed_lateness_s < 60:
            problems.append("allowed_lateness_s must be >= 60")
        if problems:
            raise ValueError("TrafficSpec: " + "; ".join(problems))

    @property
    def id_prefix(self) -> str:
        return self.run_id or f"lg{self.seed}"
