-- 039: what the status route shows of inbound work (issue #13, item 5), read in its one query.
-- Each index below serves one part of that query, so it stays an index probe per part whatever
-- the size of the firm's history.

-- The last webhook received: the firm's newest event.
CREATE INDEX smokeball_webhook_events_firm_created_idx ON smokeball_webhook_events (firm_id, created_at DESC);

-- Events pending (stored, not processed) and failed (an event fails only when it cannot be
-- processed at all): both few, both counted in one scan of this index alone.
CREATE INDEX smokeball_webhook_events_open_idx ON smokeball_webhook_events (firm_id, processed)
    WHERE NOT processed OR status = 'failed';

-- Any import's progress: the firm's newest import_matters job. Partial, so the many
-- process_webhook_event jobs neither enter it nor have to be skipped to find the import.
CREATE INDEX jobs_import_matters_idx ON jobs (firm_id, created_at DESC) WHERE kind = 'import_matters';

-- Failed links: a create Smokeball accepted (202) and then refused with an `error` event. A
-- matter keeps its link as 'failed' (migration 031); when it failed was not recorded.
ALTER TABLE matters ADD COLUMN smokeball_link_failed_at timestamptz;
CREATE INDEX matters_smokeball_link_failed_idx ON matters (firm_id, smokeball_link_failed_at DESC NULLS LAST)
    WHERE smokeball_link_status = 'failed';

-- A client's failed contact create removes its link (so the next sync creates the contact again)
-- and left no trace on the client. It is failed until a contact is linked to it again: the index
-- predicate drops the row by itself once smokeball_contact_id is set, so nothing clears this.
ALTER TABLE clients ADD COLUMN smokeball_contact_failed_at timestamptz;
CREATE INDEX clients_smokeball_contact_failed_idx ON clients (firm_id, smokeball_contact_failed_at DESC)
    WHERE smokeball_contact_failed_at IS NOT NULL AND smokeball_contact_id IS NULL;
