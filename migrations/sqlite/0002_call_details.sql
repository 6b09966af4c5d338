-- What the tracker learned about a call beyond its stage, and the tracker's own state of
-- a live call (so a restarted daemon resumes it).
ALTER TABLE calls ADD COLUMN talkers TEXT;              -- JSON [{extension, talk_secs}]
ALTER TABLE calls ADD COLUMN recording TEXT;            -- path on the PBX
ALTER TABLE calls ADD COLUMN voicemail TEXT;            -- JSON {mailbox, message}
ALTER TABLE calls ADD COLUMN queue TEXT;
ALTER TABLE calls ADD COLUMN reconstructed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN state TEXT;                -- tracker snapshot while live, NULL once ended
CREATE INDEX calls_live ON calls(pbx) WHERE stage <> 'ended';
