-- Usage quotas per consumer (api_key) of a project, managed through the query API's admin
-- routes. NULL means unlimited. An API gateway reads a consumer's limit, usage and reset
-- time from GET /api/v1/quotas/{api_key}; alerting may read the limits directly.
CREATE TABLE quotas (
    project_id          text        NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    api_key             text        NOT NULL CHECK (length(api_key) BETWEEN 1 AND 128),
    monthly_requests    bigint      CHECK (monthly_requests >= 0),
    requests_per_minute integer     CHECK (requests_per_minute >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, api_key)
);
