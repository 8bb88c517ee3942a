-- metrics_1h and metrics_1d as they were before TimescaleDB: tables with the columns and
-- key of metrics_1m (bucket = hour / day start). 0072 replaces them with continuous
-- aggregates and keeps their rows.
CREATE TABLE metrics_1h (
    bucket              timestamptz NOT NULL,
    project_id          text NOT NULL,
    api_key             text NOT NULL,
    endpoint            text NOT NULL,
    method              text NOT NULL,
    status_class        smallint NOT NULL CHECK (status_class BETWEEN 1 AND 5),
    request_count       bigint NOT NULL DEFAULT 0,
    error_count         bigint NOT NULL DEFAULT 0,
    server_error_count  bigint NOT NULL DEFAULT 0,
    latency_sum         double precision NOT NULL DEFAULT 0,
    latency_min         double precision,
    latency_max         double precision,
    latency_digest      tdigest,
    bytes_in            bigint NOT NULL DEFAULT 0,
    bytes_out           bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, bucket, api_key, endpoint, method, status_class)
);

CREATE TABLE metrics_1d (
    LIKE metrics_1h INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (project_id, bucket, api_key, endpoint, method, status_class)
);
