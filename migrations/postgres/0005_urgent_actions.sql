-- Pop-ups (and the ringing decisions that make them) are delivered ahead of everything
-- else: a pop-up that arrives after the manager said "hello" is useless.
ALTER TABLE actions ADD COLUMN urgent BIGINT NOT NULL DEFAULT 0;
CREATE INDEX actions_urgent_ready ON actions(next_attempt_at) WHERE state = 'pending' AND urgent = 1;
