-- Which Stripe customer pays for a consumer (api_key) of a project.
CREATE TABLE stripe_customers (
    project_id         text        NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    api_key            text        NOT NULL,
    stripe_customer_id text        NOT NULL CHECK (stripe_customer_id ~ '^[A-Za-z0-9_]{1,255}$'),
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, api_key)
);

-- Every meter event accepted by Stripe. A (project, api_key, day, meter) is exported once
-- per revision: a re-run sends nothing when the value is unchanged and only the positive
-- difference when a re-run day grew (late files). identifier is deterministic, so a crash
-- between Stripe's answer and this insert re-sends the same identifier, which Stripe dedupes.
CREATE TABLE stripe_meter_exports (
    identifier         text        PRIMARY KEY,
    project_id         text        NOT NULL,
    api_key            text        NOT NULL,
    day                date        NOT NULL,
    event_name         text        NOT NULL,
    revision           integer     NOT NULL CHECK (revision >= 1),
    value              bigint      NOT NULL,
    stripe_customer_id text        NOT NULL,
    exported_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, api_key, day, event_name, revision)
);
