-- Every continuous-aggregate refresh policy refreshes its window in one transaction.
-- TimescaleDB 2.28 refreshes in batches of 10 buckets by default, each committed on its
-- own: a reader between two batches saw a level with only part of a window materialized
-- (full test runs caught a project level 12 minutes short of the level beside it).
-- buckets_per_batch = 0 is TimescaleDB's single atomic pass.
SELECT alter_job(j.job_id, config => j.config || '{"buckets_per_batch": 0}'::jsonb)
FROM timescaledb_information.jobs j
WHERE j.proc_name = 'policy_refresh_continuous_aggregate';
