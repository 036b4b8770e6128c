-- 046: a webhook delivery is stored by one function call (issue #13's bench, docs/inbound.md).
--
-- Until now the route's transaction ran app_webhook_bind (042, 045), then its own INSERT, each a
-- statement of its own, and the bind spent five PERFORMs on set_config: in PL/pgSQL a PERFORM
-- runs the full executor, where an assignment of the same expression takes the simple-expression
-- path. app_webhook_record does the bind's lookup and key check and, while the key is current,
-- the insert, in one call; the firm it binds is the one the insert requires, as before.
--
-- The answer is bind's (firm_id, key_current) and the new event's id: null for a duplicate
-- (the same signed headers again, or a retry of the same event), and when the key is not current
-- (nothing is stored then; the route reads the connection afresh). No row: no connection.
--
-- app_webhook_bind stays for route binaries from before this migration (a deploy swaps one
-- route at a time, after migrating); nothing here calls it.
CREATE FUNCTION app_webhook_record(
    p_account_id text, p_sealed_key bytea, p_event_type text, p_resource_type text,
    p_resource_id text, p_body jsonb, p_subscription_id text, p_request_id text, p_event_ticks bigint,
    p_dedupe_key text)
    RETURNS TABLE (firm_id uuid, key_current boolean, event_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found_firm uuid;
    current boolean;
    unused text;
BEGIN
    unused := set_config('app.firm_id', '', true);
    unused := set_config('app.user_id', '', true);
    unused := set_config('app.webhook_account_id', coalesce(p_account_id, ''), true);
    -- IS NOT DISTINCT FROM: a missing previous key must give false, not null.
    SELECT i.firm_id, p_sealed_key IS NOT NULL AND (p_sealed_key IS NOT DISTINCT FROM i.webhook_secret
            OR (i.webhook_secret_rotated_at > now() - interval '10 minutes'
                AND p_sealed_key IS NOT DISTINCT FROM i.previous_webhook_secret))
    INTO found_firm, current
    FROM public.firm_integrations i
    WHERE i.platform = 'smokeball' AND i.smokeball_account_id = p_account_id AND i.is_active
        AND i.webhook_secret IS NOT NULL;
    -- The lookup setting lives only as long as this function's read.
    unused := set_config('app.webhook_account_id', '', true);
    IF found_firm IS NULL THEN
        RETURN;
    END IF;
    firm_id := found_firm;
    key_current := current;
    IF current THEN
        unused := set_config('app.firm_id', found_firm::text, true);
        -- A retry of a delivery (same RequestId, new Timestamp) is recognised by what it names;
        -- the same signed headers again by the dedupe key (concurrent duplicates: one insert wins).
        INSERT INTO public.smokeball_webhook_events AS e (
            firm_id, event_type, resource_type, resource_id, payload, subscription_id,
            smokeball_request_id, event_timestamp_ticks, dedupe_key)
        SELECT found_firm, p_event_type, p_resource_type, p_resource_id, p_body -> 'payload',
            p_subscription_id, p_request_id, p_event_ticks, p_dedupe_key
        WHERE NOT EXISTS (
            SELECT 1 FROM public.smokeball_webhook_events s
            WHERE s.firm_id = found_firm AND s.smokeball_request_id = p_request_id
                AND s.event_type = p_event_type AND s.subscription_id = p_subscription_id
                AND s.event_timestamp_ticks = p_event_ticks AND s.resource_id IS NOT DISTINCT FROM p_resource_id)
        ON CONFLICT ON CONSTRAINT smokeball_webhook_events_dedupe_key DO NOTHING
        RETURNING e.id INTO event_id;
    END IF;
    RETURN NEXT;
END
$$;
ALTER FUNCTION app_webhook_record(text, bytea, text, text, text, jsonb, text, text, bigint, text)
    OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_webhook_record(text, bytea, text, text, text, jsonb, text, text, bigint, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_webhook_record(text, bytea, text, text, text, jsonb, text, text, bigint, text)
    TO casehug_app;
