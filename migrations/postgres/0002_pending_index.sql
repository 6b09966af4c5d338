-- Claims walk the pending actions in id order; without this index they walked every
-- delivered action too, and slowed down as the table grew.
CREATE INDEX actions_pending ON actions(id) WHERE state = 'pending';
