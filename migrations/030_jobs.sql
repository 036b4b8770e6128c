-- 030: the durable job queue (issue #12, item 1).
--
-- A job is one piece of background work for one firm. The app role enqueues inside its own
-- transaction (a rolled-back change leaves no job) and reads its firm's jobs under row-level
-- security; it cannot claim. Workers log in as casehug_worker and reach every firm's jobs only
-- through the SECURITY DEFINER functions below, never by bypassing RLS: they claim with
-- FOR UPDATE SKIP LOCKED, hold a lease they extend by heartbeat, and finish, fail or release
-- under that lease. A lapsed lease (a worker killed mid-job) is rescued by the next claim.
--
-- States: pending -> running -> succeeded | dead | pending (retry with back-off, or released);
-- a pending job coalesces new enqueues of the same (firm, kind, key); a job that would become
-- pending while another pending job holds its key is `superseded` by it instead (that one does
-- the same work later, on newer data). Every enqueue and requeue notifies channel casehug_jobs.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'casehug_worker') THEN
        CREATE ROLE casehug_worker NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
ALTER ROLE casehug_worker NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
-- A job does what a route does for a firm (the same tables, the same policies), so the worker
-- role has the app role's rights, plus the queue functions only it may call.
GRANT casehug_app TO casehug_worker;
GRANT USAGE ON SCHEMA public TO casehug_worker;

CREATE TABLE jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{1,63}$'),
    -- Enqueues with the same key coalesce while the job is pending; NULL never coalesces.
    key text CHECK (octet_length(key) BETWEEN 1 AND 200),
    -- 0 interactive (a user clicked), 1 automatic (a trigger), 2 bulk.
    priority smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 2),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'succeeded', 'dead', 'superseded')),
    payload jsonb NOT NULL DEFAULT '{}',
    result jsonb,
    progress_done integer NOT NULL DEFAULT 0 CHECK (progress_done >= 0),
    progress_total integer CHECK (progress_total >= 0),
    progress_failed integer NOT NULL DEFAULT 0 CHECK (progress_failed >= 0),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    -- Pending: not before this. Running: the lease's end, when the job may be rescued; one
    -- ordered index then serves both claims.
    run_after timestamptz NOT NULL DEFAULT now(),
    lease_id uuid,
    lease_until timestamptz,
    heartbeat_at timestamptz,
    -- Readable, for people: no PHI, no secrets (the worker writes only error codes and messages
    -- it composed itself).
    last_error text CHECK (octet_length(last_error) <= 1000),
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT jobs_firm_id_id_key UNIQUE (firm_id, id),
    CONSTRAINT jobs_lease_when_running CHECK (
        (status = 'running') = (lease_id IS NOT NULL)
        AND (lease_id IS NULL) = (lease_until IS NULL)
        AND (status <> 'running' OR run_after = lease_until)),
    CONSTRAINT jobs_finished_when_final CHECK (
        (status IN ('succeeded', 'dead', 'superseded')) = (finished_at IS NOT NULL))
);
ALTER TABLE jobs OWNER TO casehug_owner;
CREATE UNIQUE INDEX jobs_pending_key ON jobs (firm_id, kind, key) WHERE status = 'pending';
CREATE INDEX jobs_ready_idx ON jobs (priority, run_after, created_at) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_firm_created_idx ON jobs (firm_id, created_at DESC);

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY jobs_tenant ON jobs
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());
-- Only for casehug_owner (the definer of the worker functions below), and only while one of them
-- has switched it on for its own statements: another role setting app.job_worker gains nothing.
CREATE POLICY jobs_worker ON jobs TO casehug_owner
    USING (current_setting('app.job_worker', true) = 'on')
    WITH CHECK (current_setting('app.job_worker', true) = 'on');

GRANT SELECT ON jobs TO casehug_app;

-- Makes a job pending again at p_run_after with p_attempts spent, or, when another pending job
-- already holds its key, marks it superseded and lets that one inherit its urgency. Returns the
-- status it ends in. Called only from the functions below (as casehug_owner, app.job_worker on).
CREATE FUNCTION jobs_requeue(p_id uuid, p_run_after timestamptz, p_attempts integer, p_error text)
    RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    old public.jobs%ROWTYPE;
BEGIN
    BEGIN
        UPDATE jobs j SET status = 'pending', run_after = p_run_after, attempts = p_attempts, last_error = p_error,
            lease_id = NULL, lease_until = NULL, finished_at = NULL, updated_at = now()
        WHERE j.id = p_id;
        PERFORM pg_notify('casehug_jobs', '');
        RETURN 'pending';
    EXCEPTION WHEN unique_violation THEN
        SELECT * INTO old FROM jobs j WHERE j.id = p_id;
        UPDATE jobs j SET priority = least(j.priority, old.priority), run_after = least(j.run_after, p_run_after),
            updated_at = now()
        WHERE j.firm_id = old.firm_id AND j.kind = old.kind AND j.key = old.key AND j.status = 'pending';
        UPDATE jobs j SET status = 'superseded', attempts = p_attempts, last_error = p_error, lease_id = NULL,
            lease_until = NULL, run_after = p_run_after, finished_at = now(), updated_at = now()
        WHERE j.id = p_id;
        PERFORM pg_notify('casehug_jobs', '');
        RETURN 'superseded';
    END;
END
$$;
ALTER FUNCTION jobs_requeue(uuid, timestamptz, integer, text) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION jobs_requeue(uuid, timestamptz, integer, text) FROM PUBLIC;

-- Enqueues a job for the calling transaction's firm (app_authenticate, a job's scope, or a
-- trigger in the host app's tables), in that transaction: it exists only if the transaction
-- commits, and the notification goes out at commit. A pending job with the same (kind, key)
-- absorbs it: the earlier run_after, the more urgent priority and the newest payload win.
-- Returns the id of the pending job.
CREATE FUNCTION app_enqueue_job(
    p_kind text, p_key text, p_payload jsonb DEFAULT '{}', p_priority smallint DEFAULT 1,
    p_run_after timestamptz DEFAULT NULL, p_max_attempts integer DEFAULT 5
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
    PERFORM pg_notify('casehug_jobs', '');
    RETURN job;
END
$$;
ALTER FUNCTION app_enqueue_job(text, text, jsonb, smallint, timestamptz, integer) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_enqueue_job(text, text, jsonb, smallint, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_enqueue_job(text, text, jsonb, smallint, timestamptz, integer) TO casehug_app;

-- A dead job of the calling firm runs again from scratch (attempts reset). Returns the id of the
-- pending job that will do the work (this one, or the pending job that superseded it), or
-- nothing for an unknown job, another firm's, or one that is not dead.
CREATE FUNCTION app_retry_job(p_job uuid)
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    firm uuid := app_current_firm();
    candidate public.jobs%ROWTYPE;
    outcome text;
    pending uuid;
BEGIN
    PERFORM set_config('app.job_worker', '', true);
    SELECT * INTO candidate FROM jobs j WHERE j.id = p_job AND j.firm_id = firm AND j.status = 'dead' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    outcome := jobs_requeue(p_job, now(), 0, candidate.last_error);
    IF outcome = 'pending' THEN
        RETURN p_job;
    END IF;
    SELECT j.id INTO pending FROM jobs j
    WHERE j.firm_id = firm AND j.kind = candidate.kind AND j.key = candidate.key AND j.status = 'pending';
    RETURN pending;
END
$$;
ALTER FUNCTION app_retry_job(uuid) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_retry_job(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_retry_job(uuid) TO casehug_app;

-- Claims the most urgent job that is due: pending ones whose run_after has come, and running
-- ones whose lease lapsed (their worker died; rescuing counts as an attempt, and one whose
-- attempts are spent becomes dead instead). Skips rows other workers are claiming. Takes a
-- lease of p_lease_seconds and binds the transaction to the job's firm. p_kinds: the kinds this
-- worker can run (NULL: any).
CREATE FUNCTION app_claim_job(p_lease_seconds double precision, p_kinds text[] DEFAULT NULL)
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

-- When the next job of these kinds falls due (a pending job's run_after, a running job's lease
-- end); NULL when there is none. An idle worker sleeps until then or until notified.
CREATE FUNCTION app_next_job_due(p_kinds text[] DEFAULT NULL)
    RETURNS timestamptz
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    due timestamptz;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    SELECT min(j.run_after) INTO due FROM jobs j
    WHERE j.status IN ('pending', 'running') AND (p_kinds IS NULL OR j.kind = ANY (p_kinds));
    PERFORM set_config('app.job_worker', '', true);
    RETURN due;
END
$$;
ALTER FUNCTION app_next_job_due(text[]) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_next_job_due(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_next_job_due(text[]) TO casehug_worker;

-- The lease holder extends its lease and records progress (NULL leaves a figure as it was).
-- False when the lease is no longer this caller's (rescued by another worker, or released).
CREATE FUNCTION app_heartbeat_job(
    p_job uuid, p_lease uuid, p_lease_seconds double precision, p_done integer DEFAULT NULL,
    p_total integer DEFAULT NULL, p_failed integer DEFAULT NULL
)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    expiry timestamptz := clock_timestamp() + make_interval(secs => p_lease_seconds);
    held boolean;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    UPDATE jobs j SET lease_until = expiry, run_after = expiry, heartbeat_at = clock_timestamp(),
        progress_done = coalesce(p_done, j.progress_done), progress_total = coalesce(p_total, j.progress_total),
        progress_failed = coalesce(p_failed, j.progress_failed), updated_at = now()
    WHERE j.id = p_job AND j.lease_id = p_lease AND j.status = 'running';
    held := FOUND;
    PERFORM set_config('app.job_worker', '', true);
    RETURN held;
END
$$;
ALTER FUNCTION app_heartbeat_job(uuid, uuid, double precision, integer, integer, integer) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_heartbeat_job(uuid, uuid, double precision, integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_heartbeat_job(uuid, uuid, double precision, integer, integer, integer)
    TO casehug_worker;

-- The lease holder records success. False when the lease is no longer this caller's.
CREATE FUNCTION app_finish_job(p_job uuid, p_lease uuid, p_result jsonb DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    held boolean;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    UPDATE jobs j SET status = 'succeeded', result = p_result, lease_id = NULL, lease_until = NULL,
        last_error = NULL, finished_at = now(), updated_at = now()
    WHERE j.id = p_job AND j.lease_id = p_lease AND j.status = 'running';
    held := FOUND;
    PERFORM set_config('app.job_worker', '', true);
    RETURN held;
END
$$;
ALTER FUNCTION app_finish_job(uuid, uuid, jsonb) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_finish_job(uuid, uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_finish_job(uuid, uuid, jsonb) TO casehug_worker;

-- The lease holder records a failure with a readable message. A retryable failure with attempts
-- left goes back to pending after a jittered exponential back-off (p_backoff_seconds doubled per
-- attempt spent, capped at p_backoff_cap_seconds, then between half and all of it); otherwise
-- the job is dead, kept with its error until someone retries it. Returns the status the job ends
-- in (pending, superseded, dead), or NULL when the lease is no longer this caller's.
CREATE FUNCTION app_fail_job(
    p_job uuid, p_lease uuid, p_error text, p_retryable boolean DEFAULT true,
    p_backoff_seconds double precision DEFAULT 5, p_backoff_cap_seconds double precision DEFAULT 3600
)
    RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    candidate public.jobs%ROWTYPE;
    message text := left(coalesce(nullif(p_error, ''), 'failed'), 1000);
    delay double precision;
    outcome text;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    SELECT * INTO candidate FROM jobs j WHERE j.id = p_job AND j.lease_id = p_lease AND j.status = 'running' FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM set_config('app.job_worker', '', true);
        RETURN NULL;
    END IF;
    IF p_retryable AND candidate.attempts < candidate.max_attempts THEN
        delay := least(p_backoff_cap_seconds, p_backoff_seconds * power(2, candidate.attempts - 1));
        delay := delay * (0.5 + random() * 0.5);
        outcome := jobs_requeue(p_job, now() + make_interval(secs => delay), candidate.attempts, message);
    ELSE
        UPDATE jobs j SET status = 'dead', last_error = message, lease_id = NULL, lease_until = NULL,
            finished_at = now(), updated_at = now()
        WHERE j.id = p_job;
        outcome := 'dead';
    END IF;
    PERFORM set_config('app.job_worker', '', true);
    RETURN outcome;
END
$$;
ALTER FUNCTION app_fail_job(uuid, uuid, text, boolean, double precision, double precision) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_fail_job(uuid, uuid, text, boolean, double precision, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_fail_job(uuid, uuid, text, boolean, double precision, double precision)
    TO casehug_worker;

-- The lease holder gives the job back without spending an attempt (a worker asked to stop).
-- Returns the status it ends in (pending or superseded), or NULL when the lease is not this caller's.
CREATE FUNCTION app_release_job(p_job uuid, p_lease uuid)
    RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    candidate public.jobs%ROWTYPE;
    outcome text;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    SELECT * INTO candidate FROM jobs j WHERE j.id = p_job AND j.lease_id = p_lease AND j.status = 'running' FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM set_config('app.job_worker', '', true);
        RETURN NULL;
    END IF;
    outcome := jobs_requeue(p_job, now(), greatest(candidate.attempts - 1, 0), candidate.last_error);
    PERFORM set_config('app.job_worker', '', true);
    RETURN outcome;
END
$$;
ALTER FUNCTION app_release_job(uuid, uuid) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_release_job(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_release_job(uuid, uuid) TO casehug_worker;

-- Binds the transaction to the job's firm while the caller's lease on it is live, as
-- app_authenticate does for a user; a job's work runs under it. Returns the firm, or nothing
-- (and no firm set) once the lease lapsed or passed to another worker.
CREATE FUNCTION app_enter_job(p_job uuid, p_lease uuid)
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    firm uuid;
BEGIN
    PERFORM set_config('app.firm_id', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.job_worker', 'on', true);
    SELECT j.firm_id INTO firm FROM jobs j
    WHERE j.id = p_job AND j.lease_id = p_lease AND j.status = 'running' AND j.lease_until > clock_timestamp();
    PERFORM set_config('app.job_worker', '', true);
    IF firm IS NOT NULL THEN
        PERFORM set_config('app.firm_id', firm::text, true);
    END IF;
    RETURN firm;
END
$$;
ALTER FUNCTION app_enter_job(uuid, uuid) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_enter_job(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_enter_job(uuid, uuid) TO casehug_worker;
