-- TimescaleDB (built from the vendored source by deploy/install.sh, preloaded by the
-- server): hypertables, continuous aggregates, compression and retention policies.
CREATE EXTENSION IF NOT EXISTS timescaledb;
