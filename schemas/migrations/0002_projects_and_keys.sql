-- Tenants and their keys. A key's secret is shown once; only its SHA-256 is stored, and
-- the first characters (prefix) are kept so a dashboard can tell keys apart.
CREATE TABLE projects (
    project_id  text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- What the gateway does with client IPs: keep, truncate (/24, /48) or hash.
    ip_privacy  text NOT NULL DEFAULT 'keep' CHECK (ip_privacy IN ('keep', 'truncate', 'hash')),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    project_id  text NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('write', 'read', 'admin')),
    key_hash    bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    prefix      text NOT NULL,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_keys_project_idx ON api_keys (project_id);
