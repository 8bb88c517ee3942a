-- Extensions from Debian packages: tdigest (mergeable latency percentiles inside SQL, so
-- rollups and Grafana can call tdigest_percentile) and pg_partman (daily partitions of the
-- metrics tables; TimescaleDB is not installable from the registries we reach).
CREATE EXTENSION IF NOT EXISTS tdigest;
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
