-- Alert rule types beyond a static threshold, and fan-out scopes (issue 15).
-- rule_type: threshold (metric cmp threshold over the window), dynamic (the window's
-- metric more than `threshold` standard deviations from its rolling mean over the
-- hourly aggregate, `baseline_days` long), rate_of_change (the window against the one
-- before it, percent or absolute), volume (requests against the same window a week ago,
-- as a ratio), quota (share of the monthly quota used), quota_forecast (hours until the
-- monthly quota is used up at the window's rate). `direction` says which way a change
-- breaches (dynamic, rate_of_change, volume); `comparator` stays the threshold type's.
-- scope: 'rule' (one state, the rule's endpoint / api_key / method filters) or fan-out
-- over each endpoint / each API key (one state per member, named in the notification).
ALTER TABLE alert_rules
    ADD COLUMN rule_type text NOT NULL DEFAULT 'threshold' CHECK (rule_type IN (
        'threshold', 'dynamic', 'rate_of_change', 'volume', 'quota', 'quota_forecast')),
    ADD COLUMN scope text NOT NULL DEFAULT 'rule'
        CHECK (scope IN ('rule', 'each_endpoint', 'each_api_key')),
    ADD COLUMN direction text NOT NULL DEFAULT 'up' CHECK (direction IN ('up', 'down', 'either')),
    ADD COLUMN change_mode text NOT NULL DEFAULT 'percent'
        CHECK (change_mode IN ('percent', 'absolute')),
    ADD COLUMN baseline_days integer NOT NULL DEFAULT 7 CHECK (baseline_days BETWEEN 1 AND 28);
CREATE INDEX alert_rules_type_idx ON alert_rules (rule_type) WHERE enabled;

-- One state per (rule, member): member '' is a rule without fan-out.
ALTER TABLE alert_state ADD COLUMN member text NOT NULL DEFAULT '';
ALTER TABLE alert_state DROP CONSTRAINT alert_state_pkey;
ALTER TABLE alert_state ADD PRIMARY KEY (rule_id, member);

-- The member an event is about, and what the notification reports besides the value
-- (the baseline mean and deviation, the previous window, the forecast exhaustion time).
ALTER TABLE alert_events ADD COLUMN member text NOT NULL DEFAULT '',
                         ADD COLUMN detail jsonb NOT NULL DEFAULT '{}';
-- Every round reads the pending events; almost all rows are delivered or suppressed.
CREATE INDEX alert_events_pending_idx ON alert_events (event_id) WHERE delivery = 'pending';
