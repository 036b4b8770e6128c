-- 042: one database round trip per webhook delivery (issue #13's bench). The route keeps each
-- connection's keys from an earlier delivery (WebhookKeyCache) and stores a delivery in one
-- transaction whose first statement is this: app_webhook_connection's lookup and binding, kept
-- only while p_sealed_key, the sealed key the delivery's signature matched, is still the
-- connection's current key or its previous one within the grace period. Otherwise the firm is
-- unbound again, the insert that follows (which requires that firm) stores nothing, and the
-- route reads the connection afresh. Compared sealed, as stored: a key sealed anew (an
-- encryption key rotation) is read afresh too, which is only one more round trip.
CREATE FUNCTION app_webhook_bind(p_account_id text, p_sealed_key bytea)
    RETURNS TABLE (firm_id uuid, key_current boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found record;
BEGIN
    SELECT c.firm_id, c.webhook_secret, c.previous_webhook_secret INTO found
    FROM app_webhook_connection(p_account_id) c;
    IF found.firm_id IS NULL THEN
        RETURN;
    END IF;
    firm_id := found.firm_id;
    -- IS NOT DISTINCT FROM: a missing previous key must give false, not null.
    key_current := p_sealed_key IS NOT NULL
        AND (p_sealed_key IS NOT DISTINCT FROM found.webhook_secret
            OR p_sealed_key IS NOT DISTINCT FROM found.previous_webhook_secret);
    IF NOT key_current THEN
        PERFORM set_config('app.firm_id', '', true);
    END IF;
    RETURN NEXT;
END
$$;
ALTER FUNCTION app_webhook_bind(text, bytea) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_webhook_bind(text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_webhook_bind(text, bytea) TO casehug_app;
