-- Buckets whose rollup must be recomputed. The speed layer's sink marks the hour of every
-- metrics_1m row it writes in the same transaction (an upsert, which locks the row), the
-- rollup job takes marks away (DELETE ... RETURNING) and recomputes those buckets
-- completely. Unlike a timestamp watermark this misses no transaction that commits late.
CREATE TABLE IF NOT EXISTS speed_rollup_pending (
    level       text        NOT NULL CHECK (level IN ('1h', '1d')),
    project_id  text        NOT NULL,
    bucket      timestamptz NOT NULL,
    marked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (level, project_id, bucket)
);
