-- Pricing tiers per project: ordered endpoint patterns (shell-style globs such as
-- '/v1/search*'); the first pattern matching an event's endpoint names its tier.
-- Endpoints matching no pattern fall into the batch layer's default tier.
CREATE TABLE billing_tiers (
    project_id text    NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    position   integer NOT NULL CHECK (position >= 0),
    pattern    text    NOT NULL CHECK (length(pattern) BETWEEN 1 AND 512),
    tier       text    NOT NULL CHECK (tier ~ '^[A-Za-z0-9_.-]{1,64}$'),
    PRIMARY KEY (project_id, position)
);
