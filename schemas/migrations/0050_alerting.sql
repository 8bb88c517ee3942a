-- Alerting: rules per project (managed with the admin key through the query API), their
-- current state, and every firing/resolution with its delivery outcome. `turnstile alerting`
-- evaluates the enabled rules every minute over metrics_1m (partial minutes included, so a
-- spike is seen while its minute is still open).
CREATE TABLE alert_rules (
    rule_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id        text        NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    name              text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    metric            text        NOT NULL CHECK (metric IN (
                          'request_count', 'error_rate', 'server_error_rate',
                          'latency_avg', 'latency_p50', 'latency_p95', 'latency_p99')),
    comparator        text        NOT NULL CHECK (comparator IN ('>', '>=', '<', '<=')),
    threshold         double precision NOT NULL,
    window_minutes    integer     NOT NULL CHECK (window_minutes BETWEEN 1 AND 60),
    -- Rates and latencies need this many requests in the window to mean anything.
    min_requests      integer     NOT NULL DEFAULT 1 CHECK (min_requests >= 0),
    cooldown_minutes  integer     NOT NULL DEFAULT 15 CHECK (cooldown_minutes BETWEEN 0 AND 1440),
    endpoint          text        CHECK (length(endpoint) BETWEEN 1 AND 512),
    api_key           text        CHECK (length(api_key) BETWEEN 1 AND 128),
    method            text        CHECK (length(method) BETWEEN 1 AND 16),
    channel           text        NOT NULL CHECK (channel IN ('slack', 'pagerduty', 'webhook')),
    target            text        NOT NULL CHECK (length(target) BETWEEN 1 AND 2048),
    enabled           boolean     NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_rules_project_idx ON alert_rules (project_id);

CREATE TABLE alert_state (
    rule_id           bigint      PRIMARY KEY REFERENCES alert_rules (rule_id) ON DELETE CASCADE,
    firing            boolean     NOT NULL,
    value             double precision,
    since             timestamptz NOT NULL,
    evaluated_at      timestamptz NOT NULL,
    last_notified_at  timestamptz
);

CREATE TABLE alert_events (
    event_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id           bigint      NOT NULL REFERENCES alert_rules (rule_id) ON DELETE CASCADE,
    project_id        text        NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    kind              text        NOT NULL CHECK (kind IN ('firing', 'resolved')),
    value             double precision,
    threshold         double precision NOT NULL,
    window_start      timestamptz NOT NULL,
    window_end        timestamptz NOT NULL,
    at                timestamptz NOT NULL,
    -- pending → delivered | failed; suppressed inside the cooldown (recorded, not sent).
    delivery          text        NOT NULL CHECK (delivery IN
                          ('pending', 'delivered', 'failed', 'suppressed')),
    attempts          integer     NOT NULL DEFAULT 0,
    delivery_error    text
);
CREATE INDEX alert_events_project_at_idx ON alert_events (project_id, at DESC);
