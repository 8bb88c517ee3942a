-- Extensions from Debian packages: tdigest (mergeable latency percentiles inside SQL, so
-- the aggregates and Grafana can call tdigest_percentile). TimescaleDB comes in 0070.
CREATE EXTENSION IF NOT EXISTS tdigest;
