-- Which processes follow which PBX, and when each last said so. A process sends a
-- ringing call's pop-up before storing the call only while it is the PBX's one follower:
-- with two, the store decides which of them records (and sends) each step.
CREATE TABLE pbx_followers (
    pbx TEXT NOT NULL,
    worker TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (pbx, worker)
);
