-- A claim asks, for each candidate, whether its call has an older pending action. With
-- only an index of pending ids, PostgreSQL answered by walking every older pending action
-- (tens of milliseconds per claim with a backlog); this one answers from the call's own
-- pending actions.
CREATE INDEX actions_pending_by_call ON actions(call_id, id) WHERE state = 'pending';
DROP INDEX actions_pending;
