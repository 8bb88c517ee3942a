-- Stream (metrics_1m) versus batch (lake) counts per (project, api_key, day), with the
-- explained causes of any difference. difference = batch_count - stream_count.
-- duplicates_in_stream: duplicate copies the stream could not recognise (they arrived in
-- another batch than the kept copy), so the stream counted them and the batch did not.
-- Expected: difference = late_beyond_lateness - duplicates_in_stream; the rest is unexplained.
CREATE TABLE reconciliation (
    project_id           text        NOT NULL,
    api_key              text        NOT NULL,
    day                  date        NOT NULL,
    batch_count          bigint      NOT NULL,
    stream_count         bigint      NOT NULL,
    difference           bigint      NOT NULL,
    late_beyond_lateness bigint      NOT NULL DEFAULT 0,
    duplicates_removed   bigint      NOT NULL DEFAULT 0,
    duplicates_in_stream bigint      NOT NULL DEFAULT 0,
    unexplained          bigint      NOT NULL,
    status               text        NOT NULL CHECK (status IN ('ok', 'explained', 'unexplained')),
    computed_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, api_key, day)
);

CREATE INDEX reconciliation_day_status ON reconciliation (day, status);
