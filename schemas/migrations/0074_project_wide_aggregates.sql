-- Project-wide continuous aggregates for dashboards (issue 12 §6): per (project, endpoint,
-- method, status class) without the consumer, and per (project, consumer) without the
-- endpoint, each at 1 minute, 1 hour (over the minute level) and 1 day (over the hour
-- level), digests merged by tdigest(tdigest), real-time aggregation on. The query API
-- reads the smallest one that has the columns a query needs
-- (schemas.metric_tables.smallest_table). SELECT lists as composed there (a test
-- compares them).

CREATE MATERIALIZED VIEW metrics_endpoints_1m WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 minute', bucket) AS bucket, project_id, endpoint, method, status_class,
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
GROUP BY 1, 2, 3, 4, 5
WITH NO DATA;
SELECT set_chunk_time_interval('metrics_endpoints_1m', INTERVAL '1 day');
CREATE INDEX metrics_endpoints_1m_project_idx ON metrics_endpoints_1m (project_id, bucket);
CREATE INDEX metrics_endpoints_1m_endpoint_idx ON metrics_endpoints_1m (project_id, endpoint, bucket);

CREATE MATERIALIZED VIEW metrics_endpoints_1h WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, project_id, endpoint, method, status_class,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(server_error_count)::bigint AS server_error_count,
       sum(latency_sum)::double precision AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       tdigest(latency_digest) AS latency_digest,
       sum(bytes_in)::bigint AS bytes_in,
       sum(bytes_out)::bigint AS bytes_out
FROM metrics_endpoints_1m
GROUP BY 1, 2, 3, 4, 5
WITH NO DATA;
SELECT set_chunk_time_interval('metrics_endpoints_1h', INTERVAL '7 days');
CREATE INDEX metrics_endpoints_1h_project_idx ON metrics_endpoints_1h (project_id, bucket);
CREATE INDEX metrics_endpoints_1h_endpoint_idx ON metrics_endpoints_1h (project_id, endpoint, bucket);

CREATE MATERIALIZED VIEW metrics_endpoints_1d WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket, project_id, endpoint, method, status_class,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(server_error_count)::bigint AS server_error_count,
       sum(latency_sum)::double precision AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       tdigest(latency_digest) AS latency_digest,
       sum(bytes_in)::bigint AS bytes_in,
       sum(bytes_out)::bigint AS bytes_out
FROM metrics_endpoints_1h
GROUP BY 1, 2, 3, 4, 5
WITH NO DATA;
SELECT set_chunk_time_interval('metrics_endpoints_1d', INTERVAL '30 days');
CREATE INDEX metrics_endpoints_1d_project_idx ON metrics_endpoints_1d (project_id, bucket);
CREATE INDEX metrics_endpoints_1d_endpoint_idx ON metrics_endpoints_1d (project_id, endpoint, bucket);

CREATE MATERIALIZED VIEW metrics_consumers_1m WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 minute', bucket) AS bucket, project_id, api_key,
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
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT set_chunk_time_interval('metrics_consumers_1m', INTERVAL '1 day');
CREATE INDEX metrics_consumers_1m_project_idx ON metrics_consumers_1m (project_id, bucket);
CREATE INDEX metrics_consumers_1m_api_key_idx ON metrics_consumers_1m (project_id, api_key, bucket);

CREATE MATERIALIZED VIEW metrics_consumers_1h WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, project_id, api_key,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(server_error_count)::bigint AS server_error_count,
       sum(latency_sum)::double precision AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       tdigest(latency_digest) AS latency_digest,
       sum(bytes_in)::bigint AS bytes_in,
       sum(bytes_out)::bigint AS bytes_out
FROM metrics_consumers_1m
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT set_chunk_time_interval('metrics_consumers_1h', INTERVAL '7 days');
CREATE INDEX metrics_consumers_1h_project_idx ON metrics_consumers_1h (project_id, bucket);
CREATE INDEX metrics_consumers_1h_api_key_idx ON metrics_consumers_1h (project_id, api_key, bucket);

CREATE MATERIALIZED VIEW metrics_consumers_1d WITH (
    timescaledb.continuous, timescaledb.materialized_only = false,
    timescaledb.create_group_indexes = false
) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket, project_id, api_key,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(server_error_count)::bigint AS server_error_count,
       sum(latency_sum)::double precision AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       tdigest(latency_digest) AS latency_digest,
       sum(bytes_in)::bigint AS bytes_in,
       sum(bytes_out)::bigint AS bytes_out
FROM metrics_consumers_1h
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT set_chunk_time_interval('metrics_consumers_1d', INTERVAL '30 days');
CREATE INDEX metrics_consumers_1d_project_idx ON metrics_consumers_1d (project_id, bucket);
CREATE INDEX metrics_consumers_1d_api_key_idx ON metrics_consumers_1d (project_id, api_key, bucket);

-- Refresh: as metrics_1h/1d (0072), each level only after the one below has
-- materialized its buckets (end offsets 10 min / 30 min / 2 h), so materialized buckets are
-- final and the open ones come from real-time aggregation.
SELECT add_continuous_aggregate_policy('metrics_endpoints_1m', start_offset => INTERVAL '3 days',
                                       end_offset => INTERVAL '10 minutes',
                                       schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('metrics_endpoints_1h', start_offset => INTERVAL '3 days',
                                       end_offset => INTERVAL '30 minutes',
                                       schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('metrics_endpoints_1d', start_offset => INTERVAL '7 days',
                                       end_offset => INTERVAL '2 hours',
                                       schedule_interval => INTERVAL '30 minutes');
SELECT add_continuous_aggregate_policy('metrics_consumers_1m', start_offset => INTERVAL '3 days',
                                       end_offset => INTERVAL '10 minutes',
                                       schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('metrics_consumers_1h', start_offset => INTERVAL '3 days',
                                       end_offset => INTERVAL '30 minutes',
                                       schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('metrics_consumers_1d', start_offset => INTERVAL '7 days',
                                       end_offset => INTERVAL '2 hours',
                                       schedule_interval => INTERVAL '30 minutes');

-- Retention as their levels of metrics_1m/1h/1d, started apart (see 0072).
SELECT add_retention_policy('metrics_endpoints_1m', drop_after => INTERVAL '30 days',
                            initial_start => now() + INTERVAL '60 minutes');
SELECT add_retention_policy('metrics_endpoints_1h', drop_after => INTERVAL '2 years',
                            initial_start => now() + INTERVAL '70 minutes');
SELECT add_retention_policy('metrics_endpoints_1d', drop_after => INTERVAL '2 years',
                            initial_start => now() + INTERVAL '80 minutes');
SELECT add_retention_policy('metrics_consumers_1m', drop_after => INTERVAL '30 days',
                            initial_start => now() + INTERVAL '90 minutes');
SELECT add_retention_policy('metrics_consumers_1h', drop_after => INTERVAL '2 years',
                            initial_start => now() + INTERVAL '100 minutes');
SELECT add_retention_policy('metrics_consumers_1d', drop_after => INTERVAL '2 years',
                            initial_start => now() + INTERVAL '110 minutes');
