-- Alert channels and delivery guarantees: email rules, a signing secret per rule for
-- webhook signatures, and min_requests defaulting to schemas.alerts.DEFAULT_MIN_REQUESTS
-- (20, as the API always did; the table said 1).
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_channel_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_channel_check
    CHECK (channel IN ('slack', 'pagerduty', 'webhook', 'email'));
ALTER TABLE alert_rules ALTER COLUMN min_requests SET DEFAULT 20;
ALTER TABLE alert_rules ALTER COLUMN cooldown_minutes SET DEFAULT 15;
-- Kept in clear, not hashed like API keys: the alerting service must sign every webhook
-- with it (HMAC needs the secret itself). gen_random_uuid() draws from a strong random
-- source; two of them give 244 random bits. Rows inserted past the API get one too.
ALTER TABLE alert_rules ADD COLUMN signing_secret text NOT NULL
    DEFAULT 'whsec_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
