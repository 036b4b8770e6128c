-- Updates (PATCH/PUT/DELETE of matters and contacts) that a partner with a write delay made:
-- answered 202 at once, applied (readable, with their event) only when due, in the order they
-- were accepted. The body is kept as sent and replayed then.
CREATE TABLE sb_pending_updates (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    resource text NOT NULL CHECK (resource IN ('matter', 'contact')),
    resource_id uuid NOT NULL,
    method text NOT NULL CHECK (method IN ('PATCH', 'PUT', 'DELETE')),
    body jsonb NOT NULL,
    client_id text NOT NULL,
    request_id text,
    apply_at timestamptz NOT NULL
);
CREATE INDEX sb_pending_updates_due_idx ON sb_pending_updates (account_id, apply_at, id);
