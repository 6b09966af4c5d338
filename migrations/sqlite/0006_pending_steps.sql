-- A decision about to create a number's customer asks whether another call is creating
-- it already (pending): answered from the pending creations only.
CREATE INDEX actions_pending_steps ON actions(step) WHERE state = 'pending' AND step IS NOT NULL;
