-- 023: Smokeball integration state, as the developer documentation lists it (firm_integrations,
-- oauth_states, smokeball_webhook_events, integration_sync_logs, Smokeball ids on matters and
-- uploads), with row-level security on every firm-scoped table. Columns beyond the list are
-- marked with the reason they exist.

CREATE TABLE firm_integrations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    platform text NOT NULL CHECK (platform ~ '^[a-z][a-z0-9_]{1,31}$'),
    -- Tokens are AES-256-GCM sealed (nonce || ciphertext || tag) by the service, with the firm,
    -- platform and column as associated data, so a sealed value copied to another row fails to open.
    access_token bytea,
    refresh_token bytea,
    token_expires_at timestamptz,
    -- Smokeball refresh tokens expire too (FACTS.md); the status route reports reconnect-needed.
    refresh_token_expires_at timestamptz,
    is_active boolean NOT NULL DEFAULT false,
    settings jsonb NOT NULL DEFAULT
        '{"auto_sync_on_approval": true, "auto_sync_on_matter_created": false, "case_type_mappings": {}}'::jsonb
        CHECK (jsonb_typeof(settings) = 'object'),
    -- Sealed like the tokens: the key Smokeball signs webhook deliveries with.
    webhook_secret bytea,
    -- Which Smokeball account the firm connected (webhook payloads carry it) and what the status
    -- route shows about it (firm name, connecting user), plus the API region it lives in.
    smokeball_account_id text,
    account_info jsonb NOT NULL DEFAULT '{}'::jsonb,
    region text,
    connected_by uuid REFERENCES users (id) ON DELETE SET NULL,
    connected_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- One row per firm per platform: the upsert key used on connect.
    CONSTRAINT firm_integrations_firm_platform_key UNIQUE (firm_id, platform)
);
CREATE UNIQUE INDEX firm_integrations_smokeball_account_idx
    ON firm_integrations (platform, smokeball_account_id) WHERE smokeball_account_id IS NOT NULL;

-- CSRF state for the OAuth authorization-code flow: valid 10 minutes, usable once. Only a hash
-- of the state is stored, and the PKCE verifier is sealed.
CREATE TABLE oauth_states (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform text NOT NULL DEFAULT 'smokeball',
    state_hash bytea NOT NULL UNIQUE,
    code_verifier bytea NOT NULL,
    redirect_after text,
    expires_at timestamptz NOT NULL DEFAULT now() + interval '10 minutes',
    consumed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at);

CREATE TABLE smokeball_webhook_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    resource_type text,
    resource_id text,
    payload jsonb NOT NULL,
    processed boolean NOT NULL DEFAULT false,
    processed_at timestamptz,
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Smokeball retries and may deliver twice (FACTS.md): these identify a delivery so a
    -- duplicate is recorded once, and let events be applied in the order they happened.
    subscription_id text,
    smokeball_request_id text,
    event_timestamp_ticks bigint,
    dedupe_key text NOT NULL,
    CONSTRAINT smokeball_webhook_events_dedupe_key UNIQUE (firm_id, dedupe_key)
);
CREATE INDEX smokeball_webhook_events_unprocessed_idx
    ON smokeball_webhook_events (firm_id, created_at) WHERE NOT processed;
CREATE INDEX smokeball_webhook_events_resource_idx
    ON smokeball_webhook_events (firm_id, resource_type, resource_id);

CREATE TABLE integration_sync_logs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    integration_id uuid REFERENCES firm_integrations (id) ON DELETE SET NULL,
    matter_id uuid REFERENCES matters (id) ON DELETE SET NULL,
    upload_id uuid REFERENCES uploads (id) ON DELETE SET NULL,
    action text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'success', 'failed', 'skipped')),
    external_id text,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX integration_sync_logs_firm_created_idx ON integration_sync_logs (firm_id, created_at DESC);
CREATE INDEX integration_sync_logs_matter_idx ON integration_sync_logs (matter_id, created_at DESC);

ALTER TABLE matters ADD COLUMN smokeball_matter_id text;
ALTER TABLE matters ADD COLUMN smokeball_synced_at timestamptz;
-- Unique as well as indexed: a Smokeball matter links to at most one CaseHug matter per firm,
-- which is what makes re-running a sync safe.
CREATE UNIQUE INDEX matters_smokeball_matter_id_idx
    ON matters (firm_id, smokeball_matter_id) WHERE smokeball_matter_id IS NOT NULL;

ALTER TABLE uploads ADD COLUMN smokeball_file_id text;
ALTER TABLE uploads ADD COLUMN smokeball_synced_at timestamptz;
CREATE UNIQUE INDEX uploads_smokeball_file_id_idx
    ON uploads (firm_id, smokeball_file_id) WHERE smokeball_file_id IS NOT NULL;

ALTER TABLE firm_integrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE firm_integrations FORCE ROW LEVEL SECURITY;
CREATE POLICY firm_integrations_tenant ON firm_integrations
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());

ALTER TABLE oauth_states ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_states FORCE ROW LEVEL SECURITY;
CREATE POLICY oauth_states_tenant ON oauth_states
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());

ALTER TABLE smokeball_webhook_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE smokeball_webhook_events FORCE ROW LEVEL SECURITY;
CREATE POLICY smokeball_webhook_events_tenant ON smokeball_webhook_events
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());

ALTER TABLE integration_sync_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE integration_sync_logs FORCE ROW LEVEL SECURITY;
CREATE POLICY integration_sync_logs_tenant ON integration_sync_logs
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());

GRANT SELECT, INSERT, UPDATE, DELETE
    ON firm_integrations, oauth_states, smokeball_webhook_events, integration_sync_logs TO casehug_app;
