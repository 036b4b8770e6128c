-- 032: each firm's Smokeball matter types (issue #12), cached for a day in the database so
-- every worker process shares one copy: resolving a matter type costs no request while the
-- row is fresh. One row per firm: the Smokeball account and the location the types were
-- fetched for, the Smokeball firm's own state (GET /firm) when that is where the location came
-- from, and the types (id, name, category, type, representativeOptions) as fetched. Owned by casehug_owner, under
-- the same forced row-level security as the rest.
CREATE TABLE smokeball_matter_type_cache (
    firm_id uuid PRIMARY KEY REFERENCES firms (id) ON DELETE CASCADE,
    -- firm_integrations.smokeball_account_id when fetched: a firm that reconnects to another
    -- Smokeball account has other types (and ids), so the row no longer serves it.
    smokeball_account_id text,
    location text NOT NULL CHECK (octet_length(location) BETWEEN 1 AND 100),
    -- NULL when the location came from the `location` setting (the firm's state was not asked).
    firm_location text CHECK (octet_length(firm_location) BETWEEN 1 AND 100),
    types jsonb NOT NULL CHECK (jsonb_typeof(types) = 'array'),
    fetched_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE smokeball_matter_type_cache OWNER TO casehug_owner;
ALTER TABLE smokeball_matter_type_cache ENABLE ROW LEVEL SECURITY;
ALTER TABLE smokeball_matter_type_cache FORCE ROW LEVEL SECURITY;
CREATE POLICY smokeball_matter_type_cache_tenant ON smokeball_matter_type_cache
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());
GRANT SELECT, INSERT, UPDATE ON smokeball_matter_type_cache TO casehug_app;
