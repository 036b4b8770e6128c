-- Webhooks: subscriptions a partner (client) holds in a firm account, the fan-out of each
-- recorded event (sb_events) to the matching subscriptions as deliveries, every HTTP attempt of
-- a delivery, and per-partner knobs that make delivery as unreliable as Smokeball says it is
-- (duplicates, out of order).

CREATE TABLE sb_webhook_subscriptions (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    client_id text NOT NULL REFERENCES sb_clients (client_id) ON DELETE CASCADE,
    name text,
    event_types text[] NOT NULL CHECK (cardinality(event_types) > 0),
    url text NOT NULL CHECK (url ~ '^https?://'),
    -- The signing key: needed in clear to sign, never returned by the API.
    key text,
    -- The sandbox clock (what the API shows).
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    -- The database clock, comparable with sb_events.created_at: a subscription receives only
    -- events recorded after it existed.
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX sb_webhook_subscriptions_owner_idx ON sb_webhook_subscriptions (account_id, client_id, created_at, id);

-- One row per event once it has been fanned out (inserted in the same statement as its
-- deliveries; the primary key makes concurrent dispatchers fan each event out once).
CREATE TABLE sb_webhook_fanout (
    event_id bigint PRIMARY KEY REFERENCES sb_events (id) ON DELETE CASCADE,
    fanned_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE sb_webhook_deliveries (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES sb_events (id) ON DELETE CASCADE,
    -- NULL once the subscription is gone (deleted, or the grant lapsed): the delivery is cancelled.
    subscription_id uuid REFERENCES sb_webhook_subscriptions (id) ON DELETE SET NULL,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    client_id text NOT NULL,
    event_type text NOT NULL,
    -- The URL at fan-out time (for the admin listing); attempts use the subscription's current URL.
    url text NOT NULL,
    -- The RequestId header: the originating request's, or one made up at fan-out and kept across retries.
    request_id text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0,
    -- When the next attempt is due; while an attempt is in flight, when its lease runs out.
    next_attempt_at timestamptz NOT NULL,
    last_status integer,
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX sb_webhook_deliveries_due_idx ON sb_webhook_deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX sb_webhook_deliveries_client_idx ON sb_webhook_deliveries (client_id, id);

-- Every HTTP POST made (a duplicated delivery makes two per attempt).
CREATE TABLE sb_webhook_attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES sb_webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    -- HTTP status, or NULL when no answer came (timeout, refused, ...).
    status integer,
    error text,
    duration_ms integer NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX sb_webhook_attempts_delivery_idx ON sb_webhook_attempts (delivery_id, id);

CREATE TABLE sb_webhook_knobs (
    client_id text PRIMARY KEY REFERENCES sb_clients (client_id) ON DELETE CASCADE,
    -- Send every delivery twice.
    duplicate boolean NOT NULL DEFAULT false,
    -- Send each batch of due deliveries in random order.
    shuffle boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
