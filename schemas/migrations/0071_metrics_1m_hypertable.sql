-- metrics_1m becomes a hypertable: 1-hour chunks (an hour of a busy project is a few
-- hundred thousand rows, so the open chunk and its indexes stay in memory, and a chunk is
-- final soon after its hour plus the 5-minute lateness, ready to compress). Keyed by the
-- series and the minute, so the speed layer's INSERT … ON CONFLICT keeps working.
-- Columns as in schemas/metric_tables.py (a test compares them). The rows of the table
-- it replaces (plain, or pg_partman's partitions in older databases) are copied over.
ALTER TABLE metrics_1m RENAME TO metrics_1m_before_timescaledb;
ALTER INDEX metrics_1m_pkey RENAME TO metrics_1m_before_timescaledb_pkey;
ALTER INDEX IF EXISTS metrics_1m_consumer_idx RENAME TO metrics_1m_before_timescaledb_consumer_idx;

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
    PRIMARY KEY (project_id, bucket, api_key, endpoint, method, status_class)
) WITH (fillfactor = 70);  -- HOT updates for the re-emits of open windows (see 0023)

SELECT create_hypertable('metrics_1m', by_range('bucket', INTERVAL '1 hour'));
-- quota checks and alert rules read one consumer's current minutes
CREATE INDEX metrics_1m_consumer_idx ON metrics_1m (project_id, api_key, bucket);

INSERT INTO metrics_1m (bucket, project_id, api_key, endpoint, method, status_class,
                        request_count, error_count, server_error_count, latency_sum,
                        latency_min, latency_max, latency_digest, bytes_in, bytes_out)
SELECT bucket, project_id, api_key, endpoint, method, status_class, request_count,
       error_count, server_error_count, latency_sum, latency_min, latency_max,
       latency_digest, bytes_in, bytes_out
FROM metrics_1m_before_timescaledb;
DROP TABLE metrics_1m_before_timescaledb;

-- Native compression of chunks the speed layer no longer writes: one segment per
-- (project, consumer), the filters of quota checks, alerts and per-consumer queries; rows
-- in bucket order inside it. A re-emit into a compressed chunk (a replay after recovery)
-- still upserts: TimescaleDB decompresses the batches it touches.
ALTER TABLE metrics_1m SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'project_id, api_key',
    timescaledb.compress_orderby = 'bucket'
);
-- Defaults; `turnstile db migrate` applies TURNSTILE_METRICS_* settings (metric_policies).
SELECT add_compression_policy('metrics_1m', compress_after => INTERVAL '2 hours');
SELECT add_retention_policy('metrics_1m', drop_after => INTERVAL '30 days');

-- The rollup loop's pending marks: TimescaleDB's invalidation log does that job now.
DROP TABLE IF EXISTS speed_rollup_pending;
