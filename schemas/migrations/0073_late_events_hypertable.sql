-- late_events is a hypertable too (daily chunks by the late events' minute), so its
-- retention drops whole chunks: 90 days, the lake's, which is as far back as the nightly
-- reconciliation that reads it can look.
SELECT create_hypertable('late_events', by_range('bucket', INTERVAL '1 day'),
                         migrate_data => true);
SELECT add_retention_policy('late_events', drop_after => INTERVAL '90 days',
                            initial_start => now() + INTERVAL '50 minutes');
