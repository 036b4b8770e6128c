-- 033: automatic sync (issue #12, item 5). Triggers in the host app's tables enqueue sync work
-- in the host app's own transaction, so a change that rolls back leaves no job:
--   * an upload becoming approved (inserted approved, or its status changed to approved), when
--     the firm's setting auto_sync_on_approval is on (default on): sync_matter for its matter;
--   * a matter inserted without a Smokeball link, when auto_sync_on_matter_created is on
--     (default off): sync_matter;
--   * a linked client's first_name, last_name, email or phone really changing: push_contact,
--     2 s from now, so a burst of edits coalesces into the one pending job its key names.
-- Only for a firm whose Smokeball connection can take work (as the status route decides:
-- active, with an access token, no reconnect needed). A change applied from Smokeball (its
-- transaction sets app.sync_origin to 'smokeball') is never sent back.
--
-- Which firm. The row's firm (NEW.firm_id) decides, not the session's: the host app may write
-- as a role that sets no firm, or one bound to another firm. app_enqueue_job enqueues for
-- app_current_firm() only, so smokeball_auto_sync_enqueue binds the firm for the one call, and
-- its SET clauses put the session's own app.firm_id / app.user_id back when it returns (or
-- fails). That helper enqueues for any firm it is given, so nobody but its owner may execute it
-- (no grant; it is not SECURITY DEFINER). The trigger functions are SECURITY DEFINER (owned by
-- casehug_owner) only so that they may call it, and PostgreSQL runs a trigger function only as
-- a trigger. The app role therefore reaches it only by writing a row, and row-level security's
-- WITH CHECK makes every row it writes its own firm's: it gains no way to enqueue for another.

CREATE FUNCTION smokeball_auto_sync_enqueue(
    p_firm uuid, p_user uuid, p_setting text, p_setting_default boolean, p_kind text, p_key text,
    p_payload jsonb, p_run_after timestamptz DEFAULT NULL
)
    RETURNS uuid
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public
    SET app.firm_id = ''
    SET app.user_id = ''
    SET app.job_worker = ''
    AS $$
DECLARE
    wanted boolean;
    author uuid;
BEGIN
    -- Inbound changes (issue #13) set this in their transaction: Smokeball already has them.
    IF current_setting('app.sync_origin', true) = 'smokeball' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('app.firm_id', p_firm::text, true);
    SELECT CASE
            WHEN p_setting IS NULL THEN true
            WHEN jsonb_typeof(i.settings -> p_setting) = 'boolean' THEN (i.settings ->> p_setting)::boolean
            ELSE p_setting_default
        END
        INTO wanted
    FROM firm_integrations i
    WHERE i.firm_id = p_firm AND i.platform = 'smokeball' AND i.is_active AND i.access_token IS NOT NULL
      AND i.needs_reconnect_reason IS NULL
      AND (i.refresh_token_expires_at IS NULL OR i.refresh_token_expires_at > now());
    IF NOT coalesce(wanted, false) THEN
        RETURN NULL;
    END IF;
    -- The job's author: the session's user when it is one of this firm's (else none).
    SELECT u.id INTO author FROM users u WHERE u.id = p_user AND u.firm_id = p_firm;
    PERFORM set_config('app.user_id', coalesce(author::text, ''), true);
    RETURN app_enqueue_job(p_kind, p_key, p_payload, 1::smallint, p_run_after);
END
$$;
ALTER FUNCTION smokeball_auto_sync_enqueue(uuid, uuid, text, boolean, text, text, jsonb, timestamptz)
    OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION smokeball_auto_sync_enqueue(uuid, uuid, text, boolean, text, text, jsonb, timestamptz)
    FROM PUBLIC;

-- uploads: approved (inserted so, or changed to it) and not yet in Smokeball.
CREATE FUNCTION smokeball_auto_sync_upload() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM smokeball_auto_sync_enqueue(
        NEW.firm_id, app_current_user(), 'auto_sync_on_approval', true, 'sync_matter',
        'matter:' || NEW.matter_id::text, jsonb_build_object('matter_id', NEW.matter_id));
    RETURN NULL;
END
$$;
ALTER FUNCTION smokeball_auto_sync_upload() OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION smokeball_auto_sync_upload() FROM PUBLIC;

-- Two triggers: an INSERT trigger's WHEN may not name OLD.
CREATE TRIGGER uploads_auto_sync_inserted AFTER INSERT ON uploads FOR EACH ROW
    WHEN (NEW.status = 'approved' AND NEW.smokeball_file_id IS NULL)
    EXECUTE FUNCTION smokeball_auto_sync_upload();
CREATE TRIGGER uploads_auto_sync_approved AFTER UPDATE OF status ON uploads FOR EACH ROW
    WHEN (NEW.status = 'approved' AND OLD.status IS DISTINCT FROM 'approved' AND NEW.smokeball_file_id IS NULL)
    EXECUTE FUNCTION smokeball_auto_sync_upload();

-- matters: inserted, not linked to Smokeball (a matter that came from there already is).
CREATE FUNCTION smokeball_auto_sync_matter() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM smokeball_auto_sync_enqueue(
        NEW.firm_id, app_current_user(), 'auto_sync_on_matter_created', false, 'sync_matter',
        'matter:' || NEW.id::text, jsonb_build_object('matter_id', NEW.id));
    RETURN NULL;
END
$$;
ALTER FUNCTION smokeball_auto_sync_matter() OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION smokeball_auto_sync_matter() FROM PUBLIC;

CREATE TRIGGER matters_auto_sync_inserted AFTER INSERT ON matters FOR EACH ROW
    WHEN (NEW.smokeball_matter_id IS NULL)
    EXECUTE FUNCTION smokeball_auto_sync_matter();

-- clients: a linked client's name, email or phone changed. Only these columns: what the push
-- job itself writes back (smokeball_synced_at) never fires it again.
CREATE FUNCTION smokeball_auto_sync_client() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM smokeball_auto_sync_enqueue(
        NEW.firm_id, app_current_user(), NULL, NULL, 'push_contact', 'contact:' || NEW.id::text,
        jsonb_build_object('client_id', NEW.id), clock_timestamp() + interval '2 seconds');
    RETURN NULL;
END
$$;
ALTER FUNCTION smokeball_auto_sync_client() OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION smokeball_auto_sync_client() FROM PUBLIC;

CREATE TRIGGER clients_auto_sync_changed AFTER UPDATE OF first_name, last_name, email, phone ON clients
    FOR EACH ROW
    WHEN (NEW.smokeball_contact_id IS NOT NULL AND (
        OLD.first_name IS DISTINCT FROM NEW.first_name OR OLD.last_name IS DISTINCT FROM NEW.last_name
        OR OLD.email IS DISTINCT FROM NEW.email OR OLD.phone IS DISTINCT FROM NEW.phone))
    EXECUTE FUNCTION smokeball_auto_sync_client();
