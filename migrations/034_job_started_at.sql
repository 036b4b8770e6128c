-- 034: when a job's run began (issue #12, the sync route's eta_seconds): `jobs.started_at`, set by
-- the claim that starts a run of attempts (the first claim after an enqueue, or after a retry or
-- a release reset `attempts` to 0) and kept by later claims (a rescue, a retry after back-off),
-- so elapsed time ÷ items done estimates the rest. app_claim_job is 030's with only that
-- assignment added; it stays owned by casehug_owner, as every queue function.

ALTER TABLE jobs ADD COLUMN started_at timestamptz;

CREATE OR REPLACE FUNCTION app_claim_job(p_lease_seconds double precision, p_kinds text[] DEFAULT NULL)
    RETURNS TABLE (
        id uuid, firm_id uuid, kind text, key text, priority smallint, payload jsonb, attempts integer,
        max_attempts integer, lease_id uuid, lease_until timestamptz, created_by uuid, created_at timestamptz
    )
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    candidate public.jobs%ROWTYPE;
    lease uuid := gen_random_uuid();
    expiry timestamptz := now() + make_interval(secs => p_lease_seconds);
BEGIN
    IF p_lease_seconds IS NULL OR p_lease_seconds <= 0 THEN
        RAISE EXCEPTION 'a lease must last a positive time' USING ERRCODE = '22023';
    END IF;
    PERFORM set_config('app.firm_id', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.job_worker', 'on', true);
    LOOP
        SELECT * INTO candidate FROM jobs j
        WHERE j.status IN ('pending', 'running') AND j.run_after <= now()
          AND (p_kinds IS NULL OR j.kind = ANY (p_kinds))
        ORDER BY j.priority, j.run_after, j.created_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            PERFORM set_config('app.job_worker', '', true);
            RETURN;
        END IF;
        EXIT WHEN candidate.status = 'pending' OR candidate.attempts < candidate.max_attempts;
        -- A job whose every attempt lost its worker (one that crashes the worker, say) stops here.
        UPDATE jobs j SET status = 'dead', lease_id = NULL, lease_until = NULL, finished_at = now(),
            updated_at = now(), last_error = 'the worker running it stopped responding on every attempt'
        WHERE j.id = candidate.id;
    END LOOP;
    UPDATE jobs j SET status = 'running', attempts = j.attempts + 1, lease_id = lease, lease_until = expiry,
        run_after = expiry, heartbeat_at = now(), updated_at = now(),
        started_at = CASE WHEN candidate.attempts = 0 THEN now() ELSE coalesce(j.started_at, now()) END,
        last_error = CASE WHEN candidate.status = 'running'
            THEN 'the worker running the previous attempt stopped responding' ELSE j.last_error END
    WHERE j.id = candidate.id;
    PERFORM set_config('app.job_worker', '', true);
    PERFORM set_config('app.firm_id', candidate.firm_id::text, true);
    id := candidate.id;
    firm_id := candidate.firm_id;
    kind := candidate.kind;
    key := candidate.key;
    priority := candidate.priority;
    payload := candidate.payload;
    attempts := candidate.attempts + 1;
    max_attempts := candidate.max_attempts;
    lease_id := lease;
    lease_until := expiry;
    created_by := candidate.created_by;
    created_at := candidate.created_at;
    RETURN NEXT;
END
$$;
ALTER FUNCTION app_claim_job(double precision, text[]) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_claim_job(double precision, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_claim_job(double precision, text[]) TO casehug_worker;
