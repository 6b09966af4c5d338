-- The operator panel: the client an employee chose for a call whose number several
-- clients share. The matrix's records made after the choice go to that client.
CREATE TABLE panel_choices (
    call_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    extension TEXT NOT NULL,
    chosen_at BIGINT NOT NULL
);
