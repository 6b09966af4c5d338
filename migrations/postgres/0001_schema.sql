-- callbridge on PostgreSQL: the same tables as on SQLite (see migrations/sqlite), in one
-- step. Times are Unix microseconds (UTC); every integer is BIGINT so both backends read
-- them as i64.

CREATE TABLE calls (
    id              TEXT PRIMARY KEY,          -- cb-{pbx}-{pbx call id}
    pbx             TEXT NOT NULL,
    pbx_call_id     TEXT NOT NULL,
    direction       TEXT NOT NULL,             -- inbound | outbound | internal
    customer_number TEXT,
    did             TEXT,
    stage           TEXT NOT NULL,             -- live | ringing | answered | ended
    rang            TEXT NOT NULL DEFAULT '[]',
    employee        TEXT,
    outcome         TEXT,
    started_at      BIGINT NOT NULL,
    answered_at     BIGINT,
    ended_at        BIGINT,
    duration_secs   BIGINT,
    talk_secs       BIGINT,
    wait_secs       BIGINT,
    updated_at      BIGINT NOT NULL,
    talkers         TEXT,
    recording       TEXT,
    voicemail       TEXT,
    queue           TEXT,
    reconstructed   BIGINT NOT NULL DEFAULT 0,
    state           TEXT                       -- tracker snapshot while live
);
CREATE INDEX calls_live ON calls(pbx) WHERE stage <> 'ended';

CREATE TABLE actions (
    id               BIGSERIAL PRIMARY KEY,
    call_id          TEXT NOT NULL REFERENCES calls(id),
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending', -- pending | done | dead | dropped
    attempts         BIGINT NOT NULL DEFAULT 0,       -- attempts finished
    next_attempt_at  BIGINT NOT NULL,
    last_status      BIGINT,
    last_error       TEXT,
    note             TEXT,
    created_at       BIGINT NOT NULL,
    done_at          BIGINT,
    step             TEXT,
    result           TEXT,
    started          BIGINT NOT NULL DEFAULT 0,       -- attempts begun
    claimed_by       TEXT,
    claimed_until    BIGINT,
    round_started_at BIGINT
);
CREATE INDEX actions_ready ON actions(next_attempt_at) WHERE state = 'pending';
CREATE INDEX actions_by_call ON actions(call_id, id);
CREATE INDEX actions_by_state ON actions(state, id);

CREATE TABLE crm_requests (
    id          BIGSERIAL PRIMARY KEY,
    action_id   BIGINT NOT NULL REFERENCES actions(id),
    call_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    elapsed_ms  BIGINT NOT NULL,
    http_status BIGINT,
    ok          BIGINT NOT NULL,
    error       TEXT
);
CREATE INDEX crm_requests_by_action ON crm_requests(action_id);
