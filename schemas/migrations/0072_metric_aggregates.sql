-- metrics_1h and metrics_1d become continuous aggregates: 1h over metrics_1m, 1d over 1h
-- (hierarchical), digests merged by the tdigest extension's tdigest(tdigest) aggregate.
-- Real-time aggregation (materialized_only = false): buckets past the materialized
-- watermark are computed from the level below at query time, so the open hour and day
-- are always in the answer and a range's totals never depend on the level serving it.
-- SELECT lists as composed by schemas/metric_tables.py (a test compares them).
ALTER TABLE metrics_1h RENAME TO metrics_1h_before_timescaledb;
ALTER TABLE metrics_1d RENAME TO metrics_1d_before_timescaledb;

CREATE MATERIALIZED VIEW metrics_1h WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, project_id, api_key, endpoint, method, status_class,
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
GROUP BY 1, 2, 3, 4, 5, 6
WITH NO DATA;

CREATE MATERIALIZED VIEW metrics_1d WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket, project_id, api_key, endpoint, method, status_class,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(server_error_count)::bigint AS server_error_count,
       sum(latency_sum)::double precision AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       tdigest(latency_digest) AS latency_digest,
       sum(bytes_in)::bigint AS bytes_in,
       sum(bytes_out)::bigint AS bytes_out
FROM metrics_1h
GROUP BY 1, 2, 3, 4, 5, 6
WITH NO DATA;

-- Chunks of a week / a month: two years stay ~100 / ~25 chunks.
SELECT set_chunk_time_interval('metrics_1h', INTERVAL '7 days');
SELECT set_chunk_time_interval('metrics_1d', INTERVAL '30 days');

-- Whole-project ranges (bucket after project_id), one consumer's or endpoint's series.
CREATE INDEX metrics_1h_project_idx ON metrics_1h (project_id, bucket);
CREATE INDEX metrics_1h_consumer_idx ON metrics_1h (project_id, api_key, bucket);
CREATE INDEX metrics_1h_endpoint_idx ON metrics_1h (project_id, endpoint, bucket);
CREATE INDEX metrics_1d_project_idx ON metrics_1d (project_id, bucket);
CREATE INDEX metrics_1d_consumer_idx ON metrics_1d (project_id, api_key, bucket);
CREATE INDEX metrics_1d_endpoint_idx ON metrics_1d (project_id, endpoint, bucket);

-- The old rollups hold up to two years, the minutes only 30 days: keep every old hour and
-- day as materialized rows. They become visible once the first refresh moves the
-- watermark (the policies below run at once); until then real-time aggregation answers
-- from the minutes. The refresh windows re-materialize their recent buckets from below.
DO $$
DECLARE
    level record;
BEGIN
    FOR level IN
        SELECT view_name, materialization_hypertable_schema AS mat_schema,
               materialization_hypertable_name AS mat_table
        FROM timescaledb_information.continuous_aggregates
        WHERE view_schema = 'public' AND view_name IN ('metrics_1h', 'metrics_1d')
    LOOP
        EXECUTE format(
            'INSERT INTO %I.%I (bucket, project_id, api_key, endpoint, method, status_class,'
            ' request_count, error_count, server_error_count, latency_sum, latency_min,'
            ' latency_max, latency_digest, bytes_in, bytes_out)'
            ' SELECT bucket, project_id, api_key, endpoint, method, status_class,'
            ' request_count, error_count, server_error_count, latency_sum, latency_min,'
            ' latency_max, latency_digest, bytes_in, bytes_out FROM %I',
            level.mat_schema, level.mat_table, level.view_name || '_before_timescaledb');
    END LOOP;
END
$$;
DROP TABLE metrics_1h_before_timescaledb;
DROP TABLE metrics_1d_before_timescaledb;

-- Refresh policies. A minute can change until its window closes (5 minutes of lateness
-- after its end, plus emit and write delay): an hour is materialized only once it ends
-- 10 minutes before now, a day one hour after midnight, so materialized buckets are
-- final and the open ones come from real-time aggregation. start_offset bounds how far
-- back changes (replays after an outage) are picked up from the invalidation log.
SELECT add_continuous_aggregate_policy('metrics_1h', start_offset => INTERVAL '3 days',
                                       end_offset => INTERVAL '10 minutes',
                                       schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('metrics_1d', start_offset => INTERVAL '7 days',
                                       end_offset => INTERVAL '1 hour',
                                       schedule_interval => INTERVAL '30 minutes');
-- Retention jobs start minutes apart (and stay apart: fixed daily schedules): dropping
-- chunks of a hypertable and of its aggregates at the same moment can deadlock.
SELECT add_retention_policy('metrics_1h', drop_after => INTERVAL '2 years',
                            initial_start => now() + INTERVAL '20 minutes');
SELECT add_retention_policy('metrics_1d', drop_after => INTERVAL '2 years',
                            initial_start => now() + INTERVAL '40 minutes');

-- pg_partman managed the old tables; nothing uses it any more.
DROP EXTENSION IF EXISTS pg_partman;
DROP SCHEMA IF EXISTS partman CASCADE;
