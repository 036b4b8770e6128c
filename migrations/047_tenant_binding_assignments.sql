-- 047: the functions that bind a request's tenant set it by assignment, not PERFORM.
--
-- In PL/pgSQL a PERFORM runs its expression through the full executor (a plan to start and end
-- each time), where an assignment of the same expression takes the simple-expression path
-- (migration 046 did this for app_webhook_record). app_authenticate runs once for every user
-- request of every route (status, sync, connect, disconnect, the settings page's reads), with
-- three such calls: by assignment it took about a tenth off the call's own cost (pgbench, eight
-- clients, four alternating pairs, 30 November 2026). app_webhook_connection (a webhook whose
-- keys the route's process does not hold yet) gets the same. What each function reads, sets and
-- returns is unchanged.
CREATE OR REPLACE FUNCTION app_authenticate(p_user_id uuid)
    RETURNS TABLE (firm_id uuid, role text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found_firm uuid;
    found_role text;
    unused text;
BEGIN
    unused := set_config('app.firm_id', '', true);
    unused := set_config('app.user_id', p_user_id::text, true);
    SELECT u.firm_id, u.role INTO found_firm, found_role FROM public.users u WHERE u.id = p_user_id;
    IF NOT FOUND THEN
        unused := set_config('app.user_id', '', true);
        RETURN;
    END IF;
    unused := set_config('app.firm_id', coalesce(found_firm::text, ''), true);
    firm_id := found_firm;
    role := found_role;
    RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION app_webhook_connection(p_account_id text)
    RETURNS TABLE (firm_id uuid, webhook_secret bytea, previous_webhook_secret bytea)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found_firm uuid;
    found_key bytea;
    found_previous bytea;
    unused text;
BEGIN
    unused := set_config('app.firm_id', '', true);
    unused := set_config('app.user_id', '', true);
    unused := set_config('app.webhook_account_id', coalesce(p_account_id, ''), true);
    SELECT i.firm_id, i.webhook_secret,
           CASE WHEN i.webhook_secret_rotated_at > now() - interval '10 minutes' THEN i.previous_webhook_secret END
    INTO found_firm, found_key, found_previous
    FROM public.firm_integrations i
    WHERE i.platform = 'smokeball' AND i.smokeball_account_id = p_account_id AND i.is_active
        AND i.webhook_secret IS NOT NULL;
    -- The lookup setting lives only as long as this function's read.
    unused := set_config('app.webhook_account_id', '', true);
    IF found_firm IS NULL THEN
        RETURN;
    END IF;
    unused := set_config('app.firm_id', found_firm::text, true);
    firm_id := found_firm;
    webhook_secret := found_key;
    previous_webhook_secret := found_previous;
    RETURN NEXT;
END
$$;
