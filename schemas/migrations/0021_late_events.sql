-- Events later than the speed layer's allowed lateness, counted per (project, api_key,
-- minute) so reconciliation can explain the stream/batch difference. The speed layer adds
-- each newly seen late event once: speed_late_offsets remembers, per Kafka partition, the
-- offset below which late events are already counted (a replay after a crash re-sends
-- them; they are skipped).
CREATE TABLE IF NOT EXISTS late_events (
    project_id     text        NOT NULL,
    api_key        text        NOT NULL,
    bucket         timestamptz NOT NULL,
    event_count    bigint      NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, api_key, bucket)
);

CREATE TABLE IF NOT EXISTS speed_late_offsets (
    topic          text    NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset    bigint  NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
);
