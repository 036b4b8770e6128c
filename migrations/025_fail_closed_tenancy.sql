-- 025: tenancy that fails closed.
--
-- Until now the tables belonged to the superuser that ran the migrations. A superuser (like any
-- role with BYPASSRLS) skips row-level security even under FORCE, so the policies only held as
-- long as every process happened to connect as casehug_app. Now:
--   * every firm-scoped table, and the SECURITY DEFINER function that sets the tenant, belongs
--     to casehug_owner: NOLOGIN, NOSUPERUSER, NOBYPASSRLS, so FORCE really applies to the owner;
--   * processes refuse to run as a superuser or BYPASSRLS role (checked per connection);
--   * queries also carry `firm_id = app_current_firm()`;
--   * references between firm-scoped rows are composite (firm_id, id) foreign keys, so a row
--     can never point into another firm's rows, whatever the policies allow;
--   * the app role may no longer update users (it needs none of their columns).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'casehug_owner') THEN
        CREATE ROLE casehug_owner NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
END
$$;
-- Roles are cluster-wide: an existing casehug_owner must still be harmless.
ALTER ROLE casehug_owner NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
ALTER ROLE casehug_app NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;

-- PostgreSQL 15 already revokes CREATE on public from PUBLIC; say so explicitly, so an older
-- server or a cluster created with other defaults gets the same schema.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO casehug_owner;

ALTER TABLE firms OWNER TO casehug_owner;
ALTER TABLE users OWNER TO casehug_owner;
ALTER TABLE case_types OWNER TO casehug_owner;
ALTER TABLE clients OWNER TO casehug_owner;
ALTER TABLE matters OWNER TO casehug_owner;
ALTER TABLE uploads OWNER TO casehug_owner;
ALTER TABLE firm_integrations OWNER TO casehug_owner;
ALTER TABLE oauth_states OWNER TO casehug_owner;
ALTER TABLE smokeball_webhook_events OWNER TO casehug_owner;
ALTER TABLE integration_sync_logs OWNER TO casehug_owner;
ALTER FUNCTION app_current_firm() OWNER TO casehug_owner;
ALTER FUNCTION app_current_user() OWNER TO casehug_owner;

-- The function now runs as casehug_owner, to which FORCE RLS applies: it reads the user's row
-- through the users policy's `id = app_current_user()` arm, so it sets the user first and clears
-- both settings again when there is no such user.
CREATE OR REPLACE FUNCTION app_authenticate(p_user_id uuid)
    RETURNS TABLE (firm_id uuid, role text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found_firm uuid;
    found_role text;
BEGIN
    PERFORM set_config('app.firm_id', '', true);
    PERFORM set_config('app.user_id', p_user_id::text, true);
    SELECT u.firm_id, u.role INTO found_firm, found_role FROM public.users u WHERE u.id = p_user_id;
    IF NOT FOUND THEN
        PERFORM set_config('app.user_id', '', true);
        RETURN;
    END IF;
    PERFORM set_config('app.firm_id', coalesce(found_firm::text, ''), true);
    firm_id := found_firm;
    role := found_role;
    RETURN NEXT;
END
$$;
ALTER FUNCTION app_authenticate(uuid) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_authenticate(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_authenticate(uuid) TO casehug_app;

-- The app role reads users; nothing it does writes them (a firm admin is made by the host app).
REVOKE UPDATE ON users FROM casehug_app;
DROP POLICY users_tenant_write ON users;

-- Composite foreign keys: the referenced row must belong to the same firm as the referencing one.
-- SET NULL names the one column to clear (PostgreSQL 15), keeping firm_id.
ALTER TABLE clients ADD CONSTRAINT clients_firm_id_id_key UNIQUE (firm_id, id);
ALTER TABLE matters ADD CONSTRAINT matters_firm_id_id_key UNIQUE (firm_id, id);
ALTER TABLE uploads ADD CONSTRAINT uploads_firm_id_id_key UNIQUE (firm_id, id);
ALTER TABLE firm_integrations ADD CONSTRAINT firm_integrations_firm_id_id_key UNIQUE (firm_id, id);

ALTER TABLE matters DROP CONSTRAINT matters_client_id_fkey;
ALTER TABLE matters ADD CONSTRAINT matters_client_fkey FOREIGN KEY (firm_id, client_id)
    REFERENCES clients (firm_id, id) ON DELETE SET NULL (client_id);

ALTER TABLE uploads DROP CONSTRAINT uploads_matter_id_fkey;
ALTER TABLE uploads ADD CONSTRAINT uploads_matter_fkey FOREIGN KEY (firm_id, matter_id)
    REFERENCES matters (firm_id, id) ON DELETE CASCADE;

ALTER TABLE integration_sync_logs DROP CONSTRAINT integration_sync_logs_integration_id_fkey;
ALTER TABLE integration_sync_logs ADD CONSTRAINT integration_sync_logs_integration_fkey
    FOREIGN KEY (firm_id, integration_id) REFERENCES firm_integrations (firm_id, id) ON DELETE SET NULL (integration_id);
ALTER TABLE integration_sync_logs DROP CONSTRAINT integration_sync_logs_matter_id_fkey;
ALTER TABLE integration_sync_logs ADD CONSTRAINT integration_sync_logs_matter_fkey
    FOREIGN KEY (firm_id, matter_id) REFERENCES matters (firm_id, id) ON DELETE SET NULL (matter_id);
ALTER TABLE integration_sync_logs DROP CONSTRAINT integration_sync_logs_upload_id_fkey;
ALTER TABLE integration_sync_logs ADD CONSTRAINT integration_sync_logs_upload_fkey
    FOREIGN KEY (firm_id, upload_id) REFERENCES uploads (firm_id, id) ON DELETE SET NULL (upload_id);

-- References to users stay single-column: a user's firm is the host application's to change
-- (users.firm_id is nullable and may move), so a composite key would block that or cascade a
-- firm change into these rows. oauth_states.user_id is checked against the user's current firm
-- when a state is consumed, and firm_integrations.connected_by is history.
