-- 027: what the connect and callback routes need of the database (issue #11).
--
-- connect creates an oauth_states row for a firm admin: only the SHA-256 of a 32-byte random
-- state is stored, the PKCE verifier is sealed, the row is valid 10 minutes and single use, and
-- a user has at most 20 live states (older ones make room). callback consumes the state
-- atomically and learns which firm and user it belongs to before any tenant is set: the state
-- itself is the capability, so a policy lets a session that names a state's hash reach that row.
--
-- firm_integrations gains what status reports about a connection's health.

ALTER TABLE oauth_states ADD COLUMN region text NOT NULL DEFAULT 'US' CHECK (region IN ('US', 'AU', 'UK'));
ALTER TABLE oauth_states ADD CONSTRAINT oauth_states_state_hash_length CHECK (octet_length(state_hash) = 32);
ALTER TABLE oauth_states ADD CONSTRAINT oauth_states_platform_check CHECK (platform = 'smokeball');
CREATE INDEX oauth_states_user_live_idx ON oauth_states (user_id, created_at) WHERE consumed_at IS NULL;

-- The state hash the current transaction presents (hex); NULL when none.
CREATE FUNCTION app_current_oauth_state() RETURNS bytea
    LANGUAGE sql STABLE
    AS $$ SELECT decode(nullif(current_setting('app.oauth_state_hash', true), ''), 'hex') $$;
ALTER FUNCTION app_current_oauth_state() OWNER TO casehug_owner;

CREATE POLICY oauth_states_by_state ON oauth_states FOR SELECT
    USING (state_hash = app_current_oauth_state());
CREATE POLICY oauth_states_consume_by_state ON oauth_states FOR UPDATE
    USING (state_hash = app_current_oauth_state()) WITH CHECK (state_hash = app_current_oauth_state());

-- connect: a new state for the calling firm admin (after app_authenticate). Returns when it
-- expires. Serialised per user, so concurrent connects cannot exceed the cap.
CREATE FUNCTION app_create_oauth_state(p_state_hash bytea, p_code_verifier bytea, p_region text)
    RETURNS timestamptz
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    caller uuid := app_current_user();
    firm uuid := app_current_firm();
    expires timestamptz := now() + interval '10 minutes';
BEGIN
    IF caller IS NULL OR firm IS NULL OR NOT EXISTS (
        SELECT 1 FROM users u WHERE u.id = caller AND u.firm_id = firm AND u.role = 'firm_admin'
    ) THEN
        RAISE EXCEPTION 'only a firm administrator may connect Smokeball' USING ERRCODE = '42501';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('oauth_states:' || caller::text, 0));
    DELETE FROM oauth_states s
    WHERE s.user_id = caller AND (s.consumed_at IS NOT NULL OR s.expires_at <= now());
    DELETE FROM oauth_states s
    WHERE s.id IN (
        SELECT o.id FROM oauth_states o WHERE o.user_id = caller
        ORDER BY o.created_at DESC, o.id OFFSET 19
    );
    INSERT INTO oauth_states (firm_id, user_id, platform, state_hash, code_verifier, region, expires_at)
    VALUES (firm, caller, 'smokeball', p_state_hash, p_code_verifier, p_region, expires);
    RETURN expires;
END
$$;
ALTER FUNCTION app_create_oauth_state(bytea, bytea, text) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_create_oauth_state(bytea, bytea, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_create_oauth_state(bytea, bytea, text) TO casehug_app;

-- callback: consumes a live state once and binds the transaction to its firm and user, as
-- app_authenticate does. Nothing comes back for an unknown, expired or already used state, or
-- when its user is no longer an administrator of that firm (the state is then spent anyway).
-- SECURITY DEFINER so that the tenant settings it makes are its own decision, not the caller's.
CREATE FUNCTION app_consume_oauth_state(p_state_hash bytea)
    RETURNS TABLE (firm_id uuid, user_id uuid, code_verifier bytea, region text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found_firm uuid;
    found_user uuid;
    found_verifier bytea;
    found_region text;
BEGIN
    PERFORM set_config('app.firm_id', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.oauth_state_hash', encode(p_state_hash, 'hex'), true);
    UPDATE oauth_states s SET consumed_at = now()
    WHERE s.state_hash = p_state_hash AND s.consumed_at IS NULL AND s.expires_at > now()
    RETURNING s.firm_id, s.user_id, s.code_verifier, s.region
    INTO found_firm, found_user, found_verifier, found_region;
    PERFORM set_config('app.oauth_state_hash', '', true);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The user's row is reachable through the users policy once app.user_id names it.
    PERFORM set_config('app.user_id', found_user::text, true);
    IF NOT EXISTS (
        SELECT 1 FROM users u WHERE u.id = found_user AND u.firm_id = found_firm AND u.role = 'firm_admin'
    ) THEN
        PERFORM set_config('app.user_id', '', true);
        RETURN;
    END IF;
    PERFORM set_config('app.firm_id', found_firm::text, true);
    firm_id := found_firm;
    user_id := found_user;
    code_verifier := found_verifier;
    region := found_region;
    RETURN NEXT;
END
$$;
ALTER FUNCTION app_consume_oauth_state(bytea) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_consume_oauth_state(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_consume_oauth_state(bytea) TO casehug_app;

-- Connection health, for status: why a reconnect is needed (invalid_grant, revoked, ...), and
-- the webhook subscription the connection keeps (one per firm, as Smokeball recommends).
ALTER TABLE firm_integrations ADD COLUMN needs_reconnect_reason text
    CHECK (needs_reconnect_reason ~ '^[a-z][a-z_]{0,63}$');
ALTER TABLE firm_integrations ADD COLUMN webhook_subscription_id text;
ALTER TABLE firm_integrations ADD COLUMN webhook_event_types text[] NOT NULL DEFAULT '{}';
ALTER TABLE firm_integrations ADD COLUMN webhook_ensured_at timestamptz;
