-- Stripe corrections. The export log (stripe_meter_exports) is the authority on what was
-- billed: a row is one meter event Stripe accepted (unless pending), live until cancelled.
--   sent_at   when the request left, a lower bound of Stripe's receipt time: the 24-hour
--             cancel window is counted from it, so "within the window" is never optimistic.
--   channel   v1 (POST /v1/billing/meter_events), v2 (the meter event stream) or summary:
--             a row rebuilt from Stripe's meter event summaries after the log was lost; its
--             identifiers are unknown, so it is never cancelled (a shrink becomes a credit).
--   pending   written before the call, cleared once Stripe accepted it: a pending row after
--             a crash or a timeout is re-sent identically (same identifier) inside the 24 h
--             identifier window, and checked against the meter event summaries after it.
--   cancel_requested_at  likewise for a cancellation whose answer was not recorded.
ALTER TABLE stripe_meter_exports
    ADD COLUMN sent_at      timestamptz,
    ADD COLUMN channel      text NOT NULL DEFAULT 'v1' CHECK (channel IN ('v1', 'v2', 'summary')),
    ADD COLUMN pending      boolean NOT NULL DEFAULT false,
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN cancelled_at timestamptz;
UPDATE stripe_meter_exports SET sent_at = exported_at WHERE sent_at IS NULL;
ALTER TABLE stripe_meter_exports
    ALTER COLUMN sent_at SET NOT NULL,
    ALTER COLUMN sent_at SET DEFAULT now();
CREATE INDEX stripe_meter_exports_day ON stripe_meter_exports (day);
CREATE INDEX stripe_meter_exports_uncertain ON stripe_meter_exports (day)
    WHERE pending OR (cancel_requested_at IS NOT NULL AND cancelled_at IS NULL);

-- Usage billed in excess that Stripe can no longer take back (its cancel window is 24 h):
-- flagged for a person to credit, never re-billed or silently dropped. At most one open
-- credit per (project, api_key, day, meter); a later re-run that grows the day back
-- withdraws it (fully or in part) before anything new is sent.
CREATE TABLE stripe_credits (
    credit_id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id         text        NOT NULL,
    api_key            text        NOT NULL,
    day                date        NOT NULL,
    event_name         text        NOT NULL,
    stripe_customer_id text        NOT NULL,
    amount             bigint      NOT NULL CHECK (amount >= 0),
    billed             bigint      NOT NULL,
    exact              bigint      NOT NULL,
    reason             text        NOT NULL,
    status             text        NOT NULL DEFAULT 'open'
                                   CHECK (status IN ('open', 'credited', 'withdrawn')),
    flagged_at         timestamptz NOT NULL DEFAULT now(),
    resolved_at        timestamptz
);
CREATE UNIQUE INDEX stripe_credits_one_open
    ON stripe_credits (project_id, api_key, day, event_name) WHERE status = 'open';
CREATE INDEX stripe_credits_day ON stripe_credits (day);
