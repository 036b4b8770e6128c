-- What resources share: a write becomes readable only after the partner's configured delay
-- (Smokeball answers writes 202 and applies them asynchronously), and every change in an
-- account is recorded as an event for webhook delivery, with the RequestId that caused it.

ALTER TABLE sb_clients
    ADD COLUMN write_delay_ms integer NOT NULL DEFAULT 0 CHECK (write_delay_ms >= 0);

CREATE TABLE sb_events (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    -- Past-tense names as Smokeball sends them: matter.created, contact.updated, error, ...
    type text NOT NULL CHECK (type ~ '^[a-z]+(\.[a-z]+)?$'),
    source text NOT NULL CHECK (source IN ('API', 'Smokeball')),
    -- The API request's RequestId when the change came through the API.
    request_id text,
    -- The partner whose request caused it (NULL for changes made by a firm user).
    client_id text,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX sb_events_account_idx ON sb_events (account_id, id);
