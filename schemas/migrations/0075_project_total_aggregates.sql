-- One series per project (issue 12 §6): metrics_project_1m / 1h / 1d, keyed by the
-- project alone, so a project's totals and time series (the dashboard's historical call)
-- merge one digest per bucket instead of one per endpoint, method and status class.
-- 1m over metrics_1m, 1h over 1m, 1d over 1h; real-time aggregation on, as every level
-- (0072, 0074). SELECT lists as composed by schemas/metric_tables.py (a test compares them).

CREATE MATERIALIZED VIEW metrics_project_1m WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 minute', bucket) AS bucket, project_id,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(server_error_count)::bigint AS server_error_count,
       sum(latency_sum)::double precision AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       tdigest(latency_digest) AS latency_digest,
       sum(bytes_in)::bigint AS bytes_in,
       sum(bytes_out)::bigint AS bytes_out
FROM metrics_1m
GROUP BY 1, 2
WITH NO DATA;
SELECT set_chunk_time_interval('metrics_project_1m', INTERVAL '1 day');
CREATE INDEX metrics_project_1m_project_idx ON metrics_project_1m (project_id, bucket);

CREATE MATERIALIZED VIEW metrics_project_1h WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, project_id,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(server_error_count)::bigint AS server_error_count,
       sum(latency_sum)::double precision AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       tdigest(latency_digest) AS latency_digest,
       sum(bytes_in)::bigint AS bytes_in,
       sum(bytes_out)::bigint AS bytes_out
FROM metrics_project_1m
GROUP BY 1, 2
WITH NO DATA;
SELECT set_chunk_time_interval('metrics_project_1h', INTERVAL '7 days');
CREATE INDEX metrics_project_1h_project_idx ON metrics_project_1h (project_id, bucket);

CREATE MATERIALIZED VIEW metrics_project_1d WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket, project_id,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(server_error_count)::bigint AS server_error_count,
       sum(latency_sum)::double precision AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       tdigest(latency_digest) AS latency_digest,
       sum(bytes_in)::bigint AS bytes_in,
       sum(bytes_out)::bigint AS bytes_out
FROM metrics_project_1h
GROUP BY 1, 2
WITH NO DATA;
SELECT set_chunk_time_interval('metrics_project_1d', INTERVAL '30 days');
CREATE INDEX metrics_project_1d_project_idx ON metrics_project_1d (project_id, bucket);

-- Existing history: the policies below re-materialize only their last 3 / 7 days, so
-- the older buckets are copied once from the per-endpoint level of the same width (the
-- same totals, digests merged). Until the first refresh moves the watermark, real-time
-- aggregation answers everything from the level below, so nothing is missing meanwhile.
DO $$
DECLARE
    level record;
BEGIN
    FOR level IN
        SELECT c.view_name, c.materialization_hypertable_schema AS mat_schema,
               c.materialization_hypertable_name AS mat_table,
               replace(c.view_name, 'metrics_project_', 'metrics_endpoints_') AS source,
               CASE WHEN c.view_name LIKE '%_1d' THEN INTERVAL '7 days'
                    ELSE INTERVAL '3 days' END AS refreshed
        FROM timescaledb_information.continuous_aggregates c
        WHERE c.view_schema = 'public' AND c.view_name LIKE 'metrics_project_%'
    LOOP
        EXECUTE format(
            'INSERT INTO %I.%I (bucket, project_id, request_count, error_count, server_error_count, latency_sum, latency_min, latency_max, latency_digest, bytes_in, bytes_out)'
            ' SELECT bucket, project_id, sum(request_count)::bigint, sum(error_count)::bigint, sum(server_error_count)::bigint, sum(latency_sum)::double precision, min(latency_min), max(latency_max), tdigest(latency_digest), sum(bytes_in)::bigint, sum(bytes_out)::bigint'
            ' FROM %I WHERE bucket < now() - %L::interval GROUP BY bucket, project_id',
            level.mat_schema, level.mat_table, level.source, level.refreshed);
    END LOOP;
END
$$;

-- Refresh as the other project-wide levels (0074), but oldest batches first. TimescaleDB
-- 2.28 refreshes 10 buckets per batch, newest first by default, and a first refresh
-- that way moved the watermark past hours not yet materialized: for a while they read
-- as empty (seen in tests/integration/test_timescaledb_policies.py). Oldest first, the
-- unrefreshed part is always past the watermark, so real-time aggregation answers it.
SELECT add_continuous_aggregate_policy('metrics_project_1m', start_offset => INTERVAL '3 days',
                                       end_offset => INTERVAL '10 minutes',
                                       schedule_interval => INTERVAL '5 minutes',
                                       refresh_newest_first => false);
SELECT add_continuous_aggregate_policy('metrics_project_1h', start_offset => INTERVAL '3 days',
                                       end_offset => INTERVAL '30 minutes',
                                       schedule_interval => INTERVAL '5 minutes',
                                       refresh_newest_first => false);
SELECT add_continuous_aggregate_policy('metrics_project_1d', start_offset => INTERVAL '7 days',
                                       end_offset => INTERVAL '2 hours',
                                       schedule_interval => INTERVAL '30 minutes',
                                       refresh_newest_first => false);
-- The same for every other level's policy (0072, 0074): a replay after an outage that
-- invalidates many hours is re-materialized oldest first too.
SELECT alter_job(job_id, config => config || '{"refresh_newest_first": false}'::jsonb)
FROM timescaledb_information.jobs
WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_schema = 'public'
  AND hypertable_name LIKE 'metrics\_%' AND NOT (config ? 'refresh_newest_first');
-- Retention as the other levels, started apart.
SELECT add_retention_policy('metrics_project_1m', drop_after => INTERVAL '30 days',
                            initial_start => now() + INTERVAL '120 minutes');
SELECT add_retention_policy('metrics_project_1h', drop_after => INTERVAL '2 years',
                            initial_start => now() + INTERVAL '130 minutes');
SELECT add_retention_policy('metrics_project_1d', drop_after => INTERVAL '2 years',
                            initial_start => now() + INTERVAL '140 minutes');
