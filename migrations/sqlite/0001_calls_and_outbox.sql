-- Calls as the tracker saw them, the CRM actions they caused (the outbox), and every
-- request made to the CRM for them. Times are Unix microseconds (UTC).

CREATE TABLE calls (
    id              TEXT PRIMARY KEY,          -- cb-{pbx}-{pbx call id}
    pbx             TEXT NOT NULL,
    pbx_call_id     TEXT NOT NULL,             -- Asterisk Linkedid
    direction       TEXT NOT NULL,             -- inbound | outbound | internal
    customer_number TEXT,
    did             TEXT,
    stage           TEXT NOT NULL,             -- ringing | answered | ended
    rang            TEXT NOT NULL DEFAULT '[]',-- JSON array of extensions
    employee        TEXT,
    outcome         TEXT,                      -- answered | missed | busy | failed
    started_at      INTEGER NOT NULL,
    answered_at     INTEGER,
    ended_at        INTEGER,
    duration_secs   INTEGER,
    talk_secs       INTEGER,
    wait_secs       INTEGER,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE actions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id         TEXT NOT NULL REFERENCES calls(id),
    kind            TEXT NOT NULL,             -- popup_in | popup_hangup | call_history | …
    payload         TEXT NOT NULL,             -- the CrmAction as JSON
    state           TEXT NOT NULL DEFAULT 'pending', -- pending | done | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,                   -- last HTTP status from the CRM
    last_error      TEXT,
    note            TEXT,                      -- what the CRM said on success worth keeping
    created_at      INTEGER NOT NULL,
    done_at         INTEGER
);
CREATE INDEX actions_ready ON actions(next_attempt_at) WHERE state = 'pending';
CREATE INDEX actions_by_call ON actions(call_id, id);

CREATE TABLE crm_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id   INTEGER NOT NULL REFERENCES actions(id),
    call_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    elapsed_ms  INTEGER NOT NULL,
    http_status INTEGER,                       -- NULL when no HTTP answer came
    ok          INTEGER NOT NULL,              -- 1 confirmed, 0 failed
    error       TEXT
);
CREATE INDEX crm_requests_by_action ON crm_requests(action_id);
