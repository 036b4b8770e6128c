-- 044: which job wrote a sync history row (issue #15), so the settings page can offer a failed
-- row's retry (`POST sync {"action": "retry", "job_id"}`) and `GET sync` shows it as `job_id`.
--
-- The column fills itself: app_enter_job, which binds a job's transactions to its firm, also
-- records the job (transaction-local `app.job_id`), and the column's default reads it. Rows
-- written outside a job (a route, a trigger) get NULL. The composite key keeps it the firm's own
-- job; a job deleted later leaves the row with NULL.

ALTER TABLE integration_sync_logs
    ADD COLUMN job_id uuid DEFAULT nullif(current_setting('app.job_id', true), '')::uuid;
ALTER TABLE integration_sync_logs ADD CONSTRAINT integration_sync_logs_job_fkey FOREIGN KEY (firm_id, job_id)
    REFERENCES jobs (firm_id, id) ON DELETE SET NULL (job_id);

-- As in 030, and `app.job_id` set with the firm (cleared when the lease is not live).
CREATE OR REPLACE FUNCTION app_enter_job(p_job uuid, p_lease uuid)
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    firm uuid;
BEGIN
    PERFORM set_config('app.firm_id', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.job_id', '', true);
    PERFORM set_config('app.job_worker', 'on', true);
    SELECT j.firm_id INTO firm FROM jobs j
    WHERE j.id = p_job AND j.lease_id = p_lease AND j.status = 'running' AND j.lease_until > clock_timestamp();
    PERFORM set_config('app.job_worker', '', true);
    IF firm IS NOT NULL THEN
        PERFORM set_config('app.firm_id', firm::text, true);
        PERFORM set_config('app.job_id', p_job::text, true);
    END IF;
    RETURN firm;
END
$$;
