-- What the consumers could not process or store, one row per dead-lettered record or row,
-- with the component that refused it, why, and where it came from (Kafka coordinates, or
-- the lake's copy of them for the billing job). NULLS NOT DISTINCT makes a replay after a
-- crash (the same record refused again) a no-op: writers use ON CONFLICT DO NOTHING.
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id   bigserial   PRIMARY KEY,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    component        text        NOT NULL,
    project_id       text,
    reason           text        NOT NULL,
    kafka_topic      text,
    kafka_partition  integer,
    kafka_offset     bigint,
    event_id         text,
    payload_sample   text,
    CONSTRAINT dead_letters_origin_once
        UNIQUE NULLS NOT DISTINCT (component, kafka_topic, kafka_partition, kafka_offset, event_id)
);
CREATE INDEX IF NOT EXISTS dead_letters_by_project ON dead_letters (project_id, recorded_at DESC);

-- One row per running instance of a long-running service, refreshed every few seconds, so
-- the query API (and the dashboard) can show a stopped or lagging layer in any deployment,
-- not only where the local supervisor runs.
CREATE TABLE IF NOT EXISTS pipeline_heartbeats (
    component        text        NOT NULL,
    instance         text        NOT NULL,
    state            text        NOT NULL,
    started_at       timestamptz NOT NULL,
    beat_at          timestamptz NOT NULL,
    last_success_at  timestamptz,
    lag_events       bigint,
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (component, instance)
);
