-- One row per (project, consumer api_key, endpoint, method, status class, minute), written
-- by the speed layer as an idempotent upsert (a re-emitted window replaces its row).
-- Daily range partitions managed by pg_partman so retention drops whole tables; the
-- default partition catches any bucket outside the premade range, so no row is refused.
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
) PARTITION BY RANGE (bucket);

-- Partitions from 30 days back (the retention) to 7 days ahead, plus metrics_1m_default.
-- Nothing loads pg_partman_bgw: whoever runs the stack calls
-- partman.run_maintenance_proc() (turnstile db maintain) to premake and to drop old days.
SELECT partman.create_parent(
    p_parent_table => 'public.metrics_1m',
    p_control => 'bucket',
    p_type => 'native',
    p_interval => 'daily',
    p_premake => 7,
    p_start_partition => to_char(date_trunc('day', now() AT TIME ZONE 'UTC') - interval '30 days',
                                 'YYYY-MM-DD HH24:MI:SS')
);

UPDATE partman.part_config
   SET retention = '30 days',
       retention_keep_table = false,
       infinite_time_partitions = true
 WHERE parent_table = 'public.metrics_1m';
