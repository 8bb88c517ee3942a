-- Speed layer rollups: metrics_1h and metrics_1d have the columns and key of metrics_1m
-- (bucket = hour / day start) and are refreshed incrementally from it by
-- `turnstile speed rollup` (speed_layer/rollups.py), digests merged with tdigest().
-- Range partitions managed by pg_partman (monthly / yearly) so retention drops whole
-- tables; the default partition catches any bucket outside the premade range.
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
) PARTITION BY RANGE (bucket);

CREATE TABLE metrics_1d (
    LIKE metrics_1h INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (project_id, bucket, api_key, endpoint, method, status_class)
) PARTITION BY RANGE (bucket);

-- Two years back (the default retention) to a few intervals ahead.
SELECT partman.create_parent(
    p_parent_table => 'public.metrics_1h',
    p_control => 'bucket',
    p_type => 'native',
    p_interval => 'monthly',
    p_premake => 3,
    p_start_partition => to_char(date_trunc('month', now() AT TIME ZONE 'UTC')
                                 - interval '24 months', 'YYYY-MM-DD HH24:MI:SS')
);
SELECT partman.create_parent(
    p_parent_table => 'public.metrics_1d',
    p_control => 'bucket',
    p_type => 'native',
    p_interval => 'yearly',
    p_premake => 2,
    p_start_partition => to_char(date_trunc('year', now() AT TIME ZONE 'UTC')
                                 - interval '2 years', 'YYYY-MM-DD HH24:MI:SS')
);

UPDATE partman.part_config
   SET retention = '2 years',
       retention_keep_table = false,
       infinite_time_partitions = true
 WHERE parent_table IN ('public.metrics_1h', 'public.metrics_1d');
