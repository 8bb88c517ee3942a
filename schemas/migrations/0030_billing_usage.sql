-- Exact daily usage per (project, api_key), computed nightly by the batch layer from the
-- Parquet lake (deduplicated on event_id). The billing source of truth: re-running a day
-- replaces that day's rows in one transaction.
CREATE TABLE billing_usage (
    project_id         text        NOT NULL,
    api_key            text        NOT NULL,
    day                date        NOT NULL,
    total_requests     bigint      NOT NULL CHECK (total_requests >= 0),
    requests_by_tier   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error_count        bigint      NOT NULL CHECK (error_count >= 0),
    server_error_count bigint      NOT NULL CHECK (server_error_count >= 0),
    bytes_in           bigint      NOT NULL CHECK (bytes_in >= 0),
    bytes_out          bigint      NOT NULL CHECK (bytes_out >= 0),
    computed_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, api_key, day)
);

-- Monthly periods and exports read a project's days in a range.
CREATE INDEX billing_usage_project_day ON billing_usage (project_id, day);
CREATE INDEX billing_usage_day ON billing_usage (day);
