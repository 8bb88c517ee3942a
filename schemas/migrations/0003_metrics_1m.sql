-- One row per (project, consumer api_key, endpoint, method, status class, minute), written
-- by the speed layer as an idempotent upsert (a re-emitted window replaces its row).
-- 0071 turns it into a TimescaleDB hypertable.
CREATE TABLE metrics_1m (
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
