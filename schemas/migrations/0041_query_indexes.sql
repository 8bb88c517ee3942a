-- Per-consumer and per-endpoint reads of the query API. The primary keys lead with
-- (project_id, bucket), which serves whole-project ranges; a series of one consumer or
-- one endpoint over 90 days would otherwise scan every consumer's rows of those days.
-- On metrics_1m only the consumer index: quota checks read one consumer's current minutes
-- on every gateway call, while per-endpoint minute series are short (≤ 6 h) ranges.
CREATE INDEX metrics_1m_consumer_idx ON metrics_1m (project_id, api_key, bucket);
CREATE INDEX metrics_1h_consumer_idx ON metrics_1h (project_id, api_key, bucket);
CREATE INDEX metrics_1h_endpoint_idx ON metrics_1h (project_id, endpoint, bucket);
CREATE INDEX metrics_1d_consumer_idx ON metrics_1d (project_id, api_key, bucket);
CREATE INDEX metrics_1d_endpoint_idx ON metrics_1d (project_id, endpoint, bucket);
