-- 040: the webhooks route's throughput and the import's progress (issue #13, item 6).
--
-- app_enqueue_job notified the workers (pg_notify) inside the enqueuing transaction. PostgreSQL
-- serialises notifying transactions with a lock it holds from their commit until after the
-- commit's WAL flush, so every delivery the webhooks route stored waited for the previous one's
-- fsync (pg_stat_activity: `Lock object`), and concurrent commits were never flushed together.
-- p_notify false leaves the notification to the caller, which sends it after its COMMIT, in a
-- transaction that writes no WAL and so holds that lock only for an instant
-- (JobQueue.notifyStatement). The job itself is stored as before; a lost notification only
-- delays a worker until its next poll. Everything else is migration 030's function.
DROP FUNCTION app_enqueue_job(text, text, jsonb, smallint, timestamptz, integer);
CREATE FUNCTION app_enqueue_job(
    p_kind text, p_key text, p_payload jsonb DEFAULT '{}', p_priority smallint DEFAULT 1,
    p_run_after timestamptz DEFAULT NULL, p_max_attempts integer DEFAULT 5, p_notify boolean DEFAULT true
)
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    firm uuid := app_current_firm();
    job uuid;
BEGIN
    PERFORM set_config('app.job_worker', '', true);
    IF firm IS NULL THEN
        RAISE EXCEPTION 'a job needs a firm: none is set for this transaction' USING ERRCODE = '42501';
    END IF;
    INSERT INTO jobs AS j (firm_id, kind, key, priority, payload, run_after, max_attempts, created_by)
    VALUES (firm, p_kind, p_key, p_priority, coalesce(p_payload, '{}'), coalesce(p_run_after, now()),
        p_max_attempts, app_current_user())
    ON CONFLICT (firm_id, kind, key) WHERE status = 'pending' DO UPDATE
        SET priority = least(j.priority, excluded.priority), run_after = least(j.run_after, excluded.run_after),
            payload = excluded.payload, max_attempts = greatest(j.max_attempts, excluded.max_attempts),
            updated_at = now()
    RETURNING j.id INTO job;
    IF p_notify IS DISTINCT FROM false THEN
        PERFORM pg_notify('casehug_jobs', '');
    END IF;
    RETURN job;
END
$$;
ALTER FUNCTION app_enqueue_job(text, text, jsonb, smallint, timestamptz, integer, boolean) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_enqueue_job(text, text, jsonb, smallint, timestamptz, integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_enqueue_job(text, text, jsonb, smallint, timestamptz, integer, boolean)
    TO casehug_app;

-- A job's progress, recorded by the lease holder in its own transaction (the import, with each
-- page it commits), so `GET sync?job_id=` follows it at once instead of at the next heartbeat
-- (a third of the lease). Unlike app_heartbeat_job it leaves the lease alone. False when the
-- lease is no longer the caller's.
CREATE FUNCTION app_report_job_progress(
    p_job uuid, p_lease uuid, p_done integer, p_total integer DEFAULT NULL, p_failed integer DEFAULT NULL
)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    held boolean;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    UPDATE jobs j SET progress_done = coalesce(p_done, j.progress_done),
        progress_total = coalesce(p_total, j.progress_total),
        progress_failed = coalesce(p_failed, j.progress_failed), updated_at = now()
    WHERE j.id = p_job AND j.lease_id = p_lease AND j.status = 'running';
    held := FOUND;
    PERFORM set_config('app.job_worker', '', true);
    RETURN held;
END
$$;
ALTER FUNCTION app_report_job_progress(uuid, uuid, integer, integer, integer) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_report_job_progress(uuid, uuid, integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_report_job_progress(uuid, uuid, integer, integer, integer) TO casehug_worker;
