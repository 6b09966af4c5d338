-- The durable outbox (issue 5): claims with a lease, so several workers (and, on
-- PostgreSQL, several processes) never deliver one action twice; attempts started vs.
-- finished, so an attempt cut short by a crash is known to be "in doubt"; named steps and
-- their results, so a later action of the same call can use an id an earlier one got.
ALTER TABLE actions ADD COLUMN step TEXT;              -- name other actions of the call refer to
ALTER TABLE actions ADD COLUMN result TEXT;            -- JSON the CRM answered worth keeping ({"id": …})
ALTER TABLE actions ADD COLUMN started INTEGER NOT NULL DEFAULT 0;  -- attempts begun
ALTER TABLE actions ADD COLUMN claimed_by TEXT;        -- worker holding the lease
ALTER TABLE actions ADD COLUMN claimed_until INTEGER;  -- lease end (Unix µs)
ALTER TABLE actions ADD COLUMN round_started_at INTEGER; -- give_up_after counts from here
UPDATE actions SET round_started_at = created_at, started = attempts;
CREATE INDEX actions_by_state ON actions(state, id);
