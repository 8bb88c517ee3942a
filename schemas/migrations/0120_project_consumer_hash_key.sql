-- Every project has its own key for hashing consumer ids in the agent (keyed BLAKE2b, see
-- schemas/ingest_wire.py): without a key the hash of a guessed id is recomputable. The
-- default draws it from gen_random_uuid() (pg_strong_random: 2 x 122 random bits as 64 hex
-- characters), so a project created by any path (CLI, admin API, demo) has one, and the
-- existing projects get one now. The batch layer reads it to map a raw consumer id to the
-- hash its events carry.
ALTER TABLE projects
    ADD COLUMN consumer_hash_key text NOT NULL
        DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
