-- Compressed metrics_1m chunks segmented by project alone, ordered by series then minute
-- (was: by project and consumer, ordered by minute; 0071). With 1-hour chunks a consumer
-- has ~8 rows in a chunk, so 0071's batches were tiny and each paid its own per-batch
-- overhead; a project's hour now fills batches of up to 1,000 rows, sorted so a series'
-- minutes sit together (delta-of-delta on the bucket, dictionary on the key columns).
-- Measured with benchmarks/metrics_storage.py (results/metrics_storage.json): 2.25x ->
-- ~8x on the same chunks; the upsert of a re-emit into a compressed chunk and a
-- consumer's read of compressed minutes cost more (figures there), both rare paths: the
-- speed layer writes open (uncompressed) chunks, and per-consumer reads go to the
-- metrics_consumers_* aggregates, which are not compressed.
ALTER TABLE metrics_1m SET (
    timescaledb.compress_segmentby = 'project_id',
    timescaledb.compress_orderby = 'api_key, endpoint, method, status_class, bucket'
);

-- Chunks compressed before keep their own settings (TimescaleDB stores them per chunk):
-- both layouts read alike, and the old ones age out with the 1-minute retention (30
-- days). They are not recompressed here: that would decompress and compress every old
-- chunk (30 days: 720) in this one transaction, holding their locks meanwhile. To
-- convert them sooner: SELECT compress_chunk(decompress_chunk(c)) per chunk, one
-- transaction each, at a quiet time.
