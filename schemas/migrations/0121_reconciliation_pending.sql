-- A day still receiving traffic (its events can still arrive and the lake still commits
-- them) is 'pending', not 'unexplained': its stream/batch difference is not final yet.
ALTER TABLE reconciliation DROP CONSTRAINT reconciliation_status_check;
ALTER TABLE reconciliation ADD CONSTRAINT reconciliation_status_check
    CHECK (status IN ('ok', 'explained', 'unexplained', 'pending'));
