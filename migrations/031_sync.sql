-- 031: outbound sync state (issue #12): how each CaseHug client, matter and upload is linked to
-- Smokeball, and the durable intents that make every external create safe to re-run after a
-- crash. Owned by casehug_owner, under the same forced row-level security as the rest.

-- A client's Smokeball contact, and how it was found: the stored link was reused, an exact
-- (case-insensitive) email match, phone plus last name, created by us, or recovered after a
-- crash by its externalSystemId. Not unique: two CaseHug clients may match one Smokeball contact.
ALTER TABLE clients ADD COLUMN smokeball_contact_id text;
ALTER TABLE clients ADD COLUMN smokeball_contact_linked_by text CHECK (
    smokeball_contact_linked_by IN ('email', 'phone_last_name', 'created', 'external_system_id'));
ALTER TABLE clients ADD COLUMN smokeball_synced_at timestamptz;
ALTER TABLE clients ADD CONSTRAINT clients_smokeball_link_how CHECK (
    (smokeball_contact_id IS NULL) = (smokeball_contact_linked_by IS NULL));
CREATE INDEX clients_smokeball_contact_idx ON clients (firm_id, smokeball_contact_id)
    WHERE smokeball_contact_id IS NOT NULL;

-- A matter's link: pending from the create's 202 until the matter reads back (confirmed), or
-- failed by its `error` event (issue #13). `smokeball_request_id` is the create's RequestId,
-- which that event carries. `smokeball_sent` is what was last sent (the MatterDto fields), so a
-- re-sync PATCHes only what changed. `smokeball_folder_id` is the one documents folder.
ALTER TABLE matters ADD COLUMN smokeball_link_status text CHECK (
    smokeball_link_status IN ('pending', 'confirmed', 'failed'));
ALTER TABLE matters ADD COLUMN smokeball_request_id text;
ALTER TABLE matters ADD COLUMN smokeball_sent jsonb CHECK (jsonb_typeof(smokeball_sent) = 'object');
ALTER TABLE matters ADD COLUMN smokeball_folder_id text;
ALTER TABLE matters ADD CONSTRAINT matters_smokeball_link_status CHECK (
    (smokeball_matter_id IS NULL) = (smokeball_link_status IS NULL));

-- Before every external create (contact, matter, folder, file) the worker commits an intent: the
-- RequestId it will send and the externalSystemId (or, for folders and files, the name) that
-- identify what it creates. After a crash the re-run finds the open intent and looks for what
-- it may have made (the answered id, else a listing matched on externalSystemId or name) before
-- creating anything, so nothing is created twice.
--   intended: committed before the request; Smokeball may or may not have it.
--   accepted: Smokeball answered 202 with external_id; not yet recorded on the CaseHug row.
--   done:     the CaseHug row holds the link.
--   abandoned: Smokeball refused it, or the re-run proved it was never made.
CREATE TABLE smokeball_sync_intents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    resource text NOT NULL CHECK (resource IN ('contact', 'matter', 'folder', 'file')),
    -- The CaseHug row the resource is made for: the client, the matter (matter and folder), the upload.
    local_id uuid NOT NULL,
    request_id text NOT NULL CHECK (octet_length(request_id) BETWEEN 1 AND 100),
    external_system_id text,
    -- What else identifies it in a listing (a folder's or file's name, the matter it is in).
    -- No PHI beyond what the CaseHug rows already hold.
    details jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object'),
    external_id text,
    state text NOT NULL DEFAULT 'intended' CHECK (state IN ('intended', 'accepted', 'done', 'abandoned')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT smokeball_sync_intents_accepted_has_id CHECK (state <> 'accepted' OR external_id IS NOT NULL)
);
-- At most one open intent per resource: a second create for the same row must find the first.
CREATE UNIQUE INDEX smokeball_sync_intents_open_idx ON smokeball_sync_intents (firm_id, resource, local_id)
    WHERE state IN ('intended', 'accepted');
CREATE INDEX smokeball_sync_intents_request_idx ON smokeball_sync_intents (firm_id, request_id);
ALTER TABLE smokeball_sync_intents OWNER TO casehug_owner;
ALTER TABLE smokeball_sync_intents ENABLE ROW LEVEL SECURITY;
ALTER TABLE smokeball_sync_intents FORCE ROW LEVEL SECURITY;
CREATE POLICY smokeball_sync_intents_tenant ON smokeball_sync_intents
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());
GRANT SELECT, INSERT, UPDATE ON smokeball_sync_intents TO casehug_app;

-- History pages (the sync route): newest first with a stable tie-break, per matter and per firm.
CREATE INDEX integration_sync_logs_firm_page_idx ON integration_sync_logs (firm_id, created_at DESC, id DESC);
CREATE INDEX integration_sync_logs_matter_page_idx
    ON integration_sync_logs (firm_id, matter_id, created_at DESC, id DESC) WHERE matter_id IS NOT NULL;
