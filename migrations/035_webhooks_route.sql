-- 035: what the webhooks route needs (issue #13, item 1).
--
-- Smokeball's deliveries carry no user and no firm: only the envelope's accountId. The route
-- finds the connection by that id before any tenant is set, through app_webhook_connection,
-- which returns only what checking the signature needs and binds the transaction to the firm
-- (as app_authenticate does). The lookup policy applies to casehug_owner only, i.e. inside that
-- function: the app role gains no way to read another firm's row.
--
-- A reconnect replaces the webhook key while deliveries signed with the old one may still be in
-- flight (Smokeball retries for minutes): the old key is kept, sealed under its own column name,
-- and accepted for 10 minutes after the rotation.

ALTER TABLE firm_integrations ADD COLUMN previous_webhook_secret bytea;
ALTER TABLE firm_integrations ADD COLUMN webhook_secret_rotated_at timestamptz;

CREATE POLICY firm_integrations_webhook_lookup ON firm_integrations FOR SELECT TO casehug_owner
    USING (platform = 'smokeball'
        AND smokeball_account_id = nullif(current_setting('app.webhook_account_id', true), ''));

CREATE FUNCTION app_webhook_connection(p_account_id text)
    RETURNS TABLE (firm_id uuid, webhook_secret bytea, previous_webhook_secret bytea)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found_firm uuid;
    found_key bytea;
    found_previous bytea;
BEGIN
    PERFORM set_config('app.firm_id', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.webhook_account_id', coalesce(p_account_id, ''), true);
    SELECT i.firm_id, i.webhook_secret,
           CASE WHEN i.webhook_secret_rotated_at > now() - interval '10 minutes' THEN i.previous_webhook_secret END
    INTO found_firm, found_key, found_previous
    FROM public.firm_integrations i
    WHERE i.platform = 'smokeball' AND i.smokeball_account_id = p_account_id AND i.is_active
        AND i.webhook_secret IS NOT NULL;
    -- The lookup setting lives only as long as this function's read.
    PERFORM set_config('app.webhook_account_id', '', true);
    IF found_firm IS NULL THEN
        RETURN;
    END IF;
    PERFORM set_config('app.firm_id', found_firm::text, true);
    firm_id := found_firm;
    webhook_secret := found_key;
    previous_webhook_secret := found_previous;
    RETURN NEXT;
END
$$;
ALTER FUNCTION app_webhook_connection(text) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_webhook_connection(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_webhook_connection(text) TO casehug_app;

-- Deliveries for accounts no firm has connected (never, or not any more): acknowledged, so
-- Smokeball stops retrying, and counted here per account id. Not firm-scoped (there is no firm)
-- and not readable or writable by the app role except through app_record_ignored_webhook. The
-- sender is not authenticated (there is no key to check), so the table is bounded: at most 1000
-- account ids, and any further ones are counted together under '*'.
CREATE TABLE smokeball_ignored_webhooks (
    account_id text PRIMARY KEY CHECK (octet_length(account_id) BETWEEN 1 AND 200),
    deliveries bigint NOT NULL DEFAULT 1 CHECK (deliveries > 0),
    last_event_type text CHECK (octet_length(last_event_type) <= 200),
    first_at timestamptz NOT NULL DEFAULT now(),
    last_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE smokeball_ignored_webhooks OWNER TO casehug_owner;

CREATE FUNCTION app_record_ignored_webhook(p_account_id text, p_event_type text)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    key text := left(coalesce(nullif(p_account_id, ''), '*'), 200);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.smokeball_ignored_webhooks w WHERE w.account_id = key)
        AND (SELECT count(*) FROM public.smokeball_ignored_webhooks) >= 1000 THEN
        key := '*';
    END IF;
    INSERT INTO public.smokeball_ignored_webhooks AS w (account_id, last_event_type)
    VALUES (key, left(p_event_type, 200))
    ON CONFLICT (account_id) DO UPDATE SET
        deliveries = w.deliveries + 1, last_event_type = EXCLUDED.last_event_type, last_at = now();
END
$$;
ALTER FUNCTION app_record_ignored_webhook(text, text) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_record_ignored_webhook(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_record_ignored_webhook(text, text) TO casehug_app;

-- A retry of a delivery carries the same RequestId with a new Timestamp: found by request id.
CREATE INDEX smokeball_webhook_events_request_idx
    ON smokeball_webhook_events (firm_id, smokeball_request_id) WHERE smokeball_request_id IS NOT NULL;
