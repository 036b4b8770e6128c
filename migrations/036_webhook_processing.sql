-- 036: processing of webhook events in the worker (issue #13, item 2).

-- What processing did with each event, for the status route and for people: applied (a CaseHug
-- row followed Smokeball), echo (a RequestId we sent: our own write coming back), stale (the
-- re-read was older than what was already applied), ignored (nothing linked, or a type we do not
-- act on), failed (could not be processed; error_message says why, in our words).
ALTER TABLE smokeball_webhook_events ADD COLUMN status text CHECK (
    status IN ('applied', 'echo', 'stale', 'ignored', 'failed'));
ALTER TABLE smokeball_webhook_events ADD CONSTRAINT smokeball_webhook_events_processed_status CHECK (
    NOT processed OR status IS NOT NULL);
-- Events are found by their request id through 035's smokeball_webhook_events_request_idx.

-- The Smokeball versionId of the matter state last applied from Smokeball (or read back). Smokeball
-- says a versionId can be passed as UpdatedSince, i.e. it is .NET ticks of the change: ordered.
-- A re-read whose versionId is not above this one changes nothing, so events processed out of
-- order (or concurrently by two workers) converge on the newest state.
ALTER TABLE matters ADD COLUMN smokeball_version_id text;

-- Every RequestId we send with a write that has no intent (PATCH of a matter, PUT of a contact),
-- written just before the request, so its echo is recognised. Creates are in
-- smokeball_sync_intents already. Only ids and the resource: no PHI.
CREATE TABLE smokeball_sent_requests (
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    request_id text NOT NULL CHECK (octet_length(request_id) BETWEEN 1 AND 100),
    resource text NOT NULL CHECK (resource IN ('contact', 'matter', 'folder', 'file')),
    resource_id text,
    sent_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (firm_id, request_id)
);
ALTER TABLE smokeball_sent_requests OWNER TO casehug_owner;
ALTER TABLE smokeball_sent_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE smokeball_sent_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY smokeball_sent_requests_tenant ON smokeball_sent_requests
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());
GRANT SELECT, INSERT ON smokeball_sent_requests TO casehug_app;

-- The delivery path, end to end: when we last asked Smokeball for a test event (`noop`, after
-- every ensure of the subscription) and when one last arrived.
ALTER TABLE firm_integrations ADD COLUMN webhook_noop_sent_at timestamptz;
ALTER TABLE firm_integrations ADD COLUMN webhook_last_noop_at timestamptz;
