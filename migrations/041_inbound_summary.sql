-- 041: one row per firm holding what the status route shows of rare inbound work (the newest
-- reconciliation, the newest import, failed links), kept by triggers on the rows it summarises.
--
-- Why: 039 read each of these from its own table and partial index in the status query. That
-- query then touched 18 relations, beyond the 16 locks a PostgreSQL backend takes on its fast
-- path (docs/inbound.md, "Status"). These things change a few times a day; the status query
-- runs on every page view. So they are copied here when they change, and status reads one row by its
-- key. The source rows stay the truth: the triggers only copy (reconciliation, import) or
-- recount under this row's lock (failed links), so the copy cannot drift from a race.
CREATE TABLE smokeball_inbound_summary (
    firm_id uuid PRIMARY KEY REFERENCES firms (id) ON DELETE CASCADE,
    -- The newest reconciliation run (smokeball_reconciliations), by run_date.
    reconciliation_run_date date,
    reconciliation_status text,
    reconciliation_started_at timestamptz,
    reconciliation_finished_at timestamptz,
    reconciliation_matters_read integer,
    reconciliation_contacts_read integer,
    reconciliation_drift integer,
    reconciliation_error text,
    -- The newest import_matters job, by created_at.
    import_job_id uuid,
    import_status text,
    import_progress_done integer,
    import_progress_total integer,
    import_progress_failed integer,
    import_last_error text,
    import_created_at timestamptz,
    import_started_at timestamptz,
    import_finished_at timestamptz,
    -- Failed links as 039 defined them, counted up to 1000 (StatusHandler.countLimit), and the
    -- latest of each kind.
    failed_matters integer NOT NULL DEFAULT 0,
    failed_matter_id uuid,
    failed_matter_at timestamptz,
    failed_contacts integer NOT NULL DEFAULT 0,
    failed_client_id uuid,
    failed_client_at timestamptz
);
ALTER TABLE smokeball_inbound_summary OWNER TO casehug_owner;
ALTER TABLE smokeball_inbound_summary ENABLE ROW LEVEL SECURITY;
ALTER TABLE smokeball_inbound_summary FORCE ROW LEVEL SECURITY;
CREATE POLICY smokeball_inbound_summary_tenant ON smokeball_inbound_summary FOR SELECT
    USING (firm_id = app_current_firm());
-- Only the trigger functions below write, each inside its own run (the setting is cleared before
-- it returns), whichever firm the transaction is bound to: a job's end is recorded by the worker
-- functions of 030, which bind none.
CREATE POLICY smokeball_inbound_summary_writer ON smokeball_inbound_summary TO casehug_owner
    USING (current_setting('app.inbound_summary', true) = 'on')
    WITH CHECK (current_setting('app.inbound_summary', true) = 'on');
GRANT SELECT ON smokeball_inbound_summary TO casehug_app;

-- Copies a reconciliation run when it is the firm's newest (or the same day's, updated).
CREATE FUNCTION app_summarize_reconciliation() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM set_config('app.inbound_summary', 'on', true);
    INSERT INTO smokeball_inbound_summary AS s (
        firm_id, reconciliation_run_date, reconciliation_status, reconciliation_started_at,
        reconciliation_finished_at, reconciliation_matters_read, reconciliation_contacts_read,
        reconciliation_drift, reconciliation_error)
    VALUES (NEW.firm_id, NEW.run_date, NEW.status, NEW.started_at, NEW.finished_at, NEW.matters_read,
        NEW.contacts_read, NEW.drift, NEW.error)
    ON CONFLICT (firm_id) DO UPDATE SET
        reconciliation_run_date = excluded.reconciliation_run_date,
        reconciliation_status = excluded.reconciliation_status,
        reconciliation_started_at = excluded.reconciliation_started_at,
        reconciliation_finished_at = excluded.reconciliation_finished_at,
        reconciliation_matters_read = excluded.reconciliation_matters_read,
        reconciliation_contacts_read = excluded.reconciliation_contacts_read,
        reconciliation_drift = excluded.reconciliation_drift,
        reconciliation_error = excluded.reconciliation_error
    WHERE s.reconciliation_run_date IS NULL OR s.reconciliation_run_date <= excluded.reconciliation_run_date;
    PERFORM set_config('app.inbound_summary', '', true);
    RETURN NULL;
END
$$;
ALTER FUNCTION app_summarize_reconciliation() OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_summarize_reconciliation() FROM PUBLIC;
CREATE TRIGGER smokeball_reconciliations_summary AFTER INSERT OR UPDATE ON smokeball_reconciliations
    FOR EACH ROW EXECUTE FUNCTION app_summarize_reconciliation();

-- Copies an import_matters job when it is the firm's newest (or the one already shown).
CREATE FUNCTION app_summarize_import() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM set_config('app.inbound_summary', 'on', true);
    INSERT INTO smokeball_inbound_summary AS s (
        firm_id, import_job_id, import_status, import_progress_done, import_progress_total,
        import_progress_failed, import_last_error, import_created_at, import_started_at, import_finished_at)
    VALUES (NEW.firm_id, NEW.id, NEW.status, NEW.progress_done, NEW.progress_total, NEW.progress_failed,
        NEW.last_error, NEW.created_at, NEW.started_at, NEW.finished_at)
    ON CONFLICT (firm_id) DO UPDATE SET
        import_job_id = excluded.import_job_id, import_status = excluded.import_status,
        import_progress_done = excluded.import_progress_done,
        import_progress_total = excluded.import_progress_total,
        import_progress_failed = excluded.import_progress_failed,
        import_last_error = excluded.import_last_error, import_created_at = excluded.import_created_at,
        import_started_at = excluded.import_started_at, import_finished_at = excluded.import_finished_at
    WHERE s.import_job_id IS NULL OR s.import_job_id = excluded.import_job_id
        OR s.import_created_at <= excluded.import_created_at;
    PERFORM set_config('app.inbound_summary', '', true);
    RETURN NULL;
END
$$;
ALTER FUNCTION app_summarize_import() OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_summarize_import() FROM PUBLIC;
-- The WHEN clause keeps every other job (a webhook's, above all) from running the function.
CREATE TRIGGER jobs_import_summary AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW WHEN (NEW.kind = 'import_matters') EXECUTE FUNCTION app_summarize_import();

-- Counts the firm's failed links again after one changed. The summary row is locked before the
-- count (the upsert already waits for a transaction changing that row; FOR UPDATE says so
-- outright), so a concurrent change waits and then counts what this one committed: the last
-- count is right.
-- Runs only in a transaction bound to the row's firm (the app's own writes, under row-level
-- security): elsewhere it could not count under that security, and a firm's deletion (which
-- deletes its matters too) must not write a summary for it.
CREATE FUNCTION app_summarize_failed_links() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    firm uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.firm_id ELSE NEW.firm_id END;
    n integer;
    latest uuid;
    latest_at timestamptz;
BEGIN
    IF app_current_firm() IS DISTINCT FROM firm THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('app.inbound_summary', 'on', true);
    INSERT INTO smokeball_inbound_summary (firm_id) VALUES (firm) ON CONFLICT (firm_id) DO NOTHING;
    PERFORM 1 FROM smokeball_inbound_summary WHERE firm_id = firm FOR UPDATE;
    IF TG_TABLE_NAME = 'matters' THEN
        SELECT count(*), (array_agg(f.id ORDER BY f.failed_at DESC NULLS LAST))[1], max(f.failed_at)
        INTO n, latest, latest_at
        FROM (SELECT m.id, m.smokeball_link_failed_at AS failed_at FROM matters m
              WHERE m.firm_id = firm AND m.smokeball_link_status = 'failed'
              ORDER BY m.smokeball_link_failed_at DESC NULLS LAST LIMIT 1000) f;
        UPDATE smokeball_inbound_summary
        SET failed_matters = n, failed_matter_id = latest, failed_matter_at = latest_at WHERE firm_id = firm;
    ELSE
        SELECT count(*), (array_agg(f.id ORDER BY f.failed_at DESC))[1], max(f.failed_at)
        INTO n, latest, latest_at
        FROM (SELECT c.id, c.smokeball_contact_failed_at AS failed_at FROM clients c
              WHERE c.firm_id = firm AND c.smokeball_contact_failed_at IS NOT NULL AND c.smokeball_contact_id IS NULL
              ORDER BY c.smokeball_contact_failed_at DESC LIMIT 1000) f;
        UPDATE smokeball_inbound_summary
        SET failed_contacts = n, failed_client_id = latest, failed_client_at = latest_at WHERE firm_id = firm;
    END IF;
    PERFORM set_config('app.inbound_summary', '', true);
    RETURN NULL;
END
$$;
ALTER FUNCTION app_summarize_failed_links() OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_summarize_failed_links() FROM PUBLIC;
-- Only changes into or out of the failed state run it (039's partial indexes' predicates).
CREATE TRIGGER matters_failed_link_inserted AFTER INSERT ON matters
    FOR EACH ROW WHEN (NEW.smokeball_link_status = 'failed') EXECUTE FUNCTION app_summarize_failed_links();
CREATE TRIGGER matters_failed_link_updated AFTER UPDATE OF smokeball_link_status, smokeball_link_failed_at ON matters
    FOR EACH ROW WHEN (OLD.smokeball_link_status = 'failed' OR NEW.smokeball_link_status = 'failed')
    EXECUTE FUNCTION app_summarize_failed_links();
CREATE TRIGGER matters_failed_link_deleted AFTER DELETE ON matters
    FOR EACH ROW WHEN (OLD.smokeball_link_status = 'failed') EXECUTE FUNCTION app_summarize_failed_links();
CREATE TRIGGER clients_failed_link_inserted AFTER INSERT ON clients
    FOR EACH ROW WHEN (NEW.smokeball_contact_failed_at IS NOT NULL AND NEW.smokeball_contact_id IS NULL)
    EXECUTE FUNCTION app_summarize_failed_links();
CREATE TRIGGER clients_failed_link_updated AFTER UPDATE OF smokeball_contact_failed_at, smokeball_contact_id ON clients
    FOR EACH ROW WHEN ((OLD.smokeball_contact_failed_at IS NOT NULL AND OLD.smokeball_contact_id IS NULL)
        OR (NEW.smokeball_contact_failed_at IS NOT NULL AND NEW.smokeball_contact_id IS NULL))
    EXECUTE FUNCTION app_summarize_failed_links();
CREATE TRIGGER clients_failed_link_deleted AFTER DELETE ON clients
    FOR EACH ROW WHEN (OLD.smokeball_contact_failed_at IS NOT NULL AND OLD.smokeball_contact_id IS NULL)
    EXECUTE FUNCTION app_summarize_failed_links();

-- What exists already (the migration runs as a superuser, past row-level security).
INSERT INTO smokeball_inbound_summary (
    firm_id, reconciliation_run_date, reconciliation_status, reconciliation_started_at, reconciliation_finished_at,
    reconciliation_matters_read, reconciliation_contacts_read, reconciliation_drift, reconciliation_error,
    import_job_id, import_status, import_progress_done, import_progress_total, import_progress_failed,
    import_last_error, import_created_at, import_started_at, import_finished_at,
    failed_matters, failed_matter_id, failed_matter_at, failed_contacts, failed_client_id, failed_client_at)
SELECT f.id, rc.run_date, rc.status, rc.started_at, rc.finished_at, rc.matters_read, rc.contacts_read, rc.drift,
    rc.error, imp.id, imp.status, imp.progress_done, imp.progress_total, imp.progress_failed, imp.last_error,
    imp.created_at, imp.started_at, imp.finished_at, fm.n, fm.id, fm.failed_at, fc.n, fc.id, fc.failed_at
FROM firms f
LEFT JOIN LATERAL (
    SELECT * FROM smokeball_reconciliations r WHERE r.firm_id = f.id ORDER BY r.run_date DESC LIMIT 1
) rc ON true
LEFT JOIN LATERAL (
    SELECT * FROM jobs j WHERE j.firm_id = f.id AND j.kind = 'import_matters' ORDER BY j.created_at DESC LIMIT 1
) imp ON true
CROSS JOIN LATERAL (
    SELECT count(*) AS n, (array_agg(x.id ORDER BY x.failed_at DESC NULLS LAST))[1] AS id, max(x.failed_at) AS failed_at
    FROM (SELECT m.id, m.smokeball_link_failed_at AS failed_at FROM matters m
          WHERE m.firm_id = f.id AND m.smokeball_link_status = 'failed'
          ORDER BY m.smokeball_link_failed_at DESC NULLS LAST LIMIT 1000) x
) fm
CROSS JOIN LATERAL (
    SELECT count(*) AS n, (array_agg(x.id ORDER BY x.failed_at DESC))[1] AS id, max(x.failed_at) AS failed_at
    FROM (SELECT c.id, c.smokeball_contact_failed_at AS failed_at FROM clients c
          WHERE c.firm_id = f.id AND c.smokeball_contact_failed_at IS NOT NULL AND c.smokeball_contact_id IS NULL
          ORDER BY c.smokeball_contact_failed_at DESC LIMIT 1000) x
) fc
WHERE rc.run_date IS NOT NULL OR imp.id IS NOT NULL OR fm.n > 0 OR fc.n > 0;

-- The status query no longer reads these; nothing else does.
DROP INDEX jobs_import_matters_idx;

-- Webhook deliveries (issue #13's bench): each index is one more entry per stored delivery.
-- Nothing reads these two: 039's smokeball_webhook_events_open_idx serves the unprocessed events
-- (023's partial index came first and was kept by mistake), and events are looked up by id,
-- request id or dedupe key, never by resource.
DROP INDEX smokeball_webhook_events_unprocessed_idx;
DROP INDEX smokeball_webhook_events_resource_idx;
