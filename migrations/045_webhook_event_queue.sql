-- 045: the stored webhook event is its own work item (issue #13's bench, docs/inbound.md).
--
-- Until now every delivery wrote two rows: the event and a process_webhook_event job beside it
-- (eleven CHECK constraints, several indexes, a PL/pgSQL enqueue). Now the worker claims
-- unprocessed events directly, as app_claim_job claims jobs: FOR UPDATE SKIP LOCKED, a lease
-- that lapses when the worker dies (kill -9: the next claim takes the event again, as a new
-- attempt), retries after a jittered exponential back-off, and `failed` with its last error
-- once the attempts are spent. An unprocessed event is pending while it holds no lease and
-- running while it does; run_after is when a pending one is due and, while running, its lease's
-- end (one ordered index serves both, as for jobs). The route wakes the workers with the
-- notification it already sends after its COMMIT; an idle worker also polls (its idle wait) in
-- case a notification is lost.
--
-- The worker reaches every firm's events only through the SECURITY DEFINER functions below,
-- under the jobs' pattern: a policy for casehug_owner alone, on only while one of them has set
-- app.job_worker.

ALTER TABLE smokeball_webhook_events ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE smokeball_webhook_events ADD COLUMN max_attempts integer NOT NULL DEFAULT 5;
-- Evaluated once here for the rows stored before (a fast default): they are due at once.
ALTER TABLE smokeball_webhook_events ADD COLUMN run_after timestamptz NOT NULL DEFAULT now();
ALTER TABLE smokeball_webhook_events ADD COLUMN lease_id uuid;
ALTER TABLE smokeball_webhook_events ADD COLUMN lease_until timestamptz;
-- Why processing did nothing (not_linked, already_linked, ...): a job's result kept it before.
ALTER TABLE smokeball_webhook_events ADD COLUMN status_reason text;

-- The claim's order. Partial: processed events (nearly all of them) are not in it.
CREATE INDEX smokeball_webhook_events_due_idx ON smokeball_webhook_events (run_after) WHERE NOT processed;

CREATE POLICY smokeball_webhook_events_worker ON smokeball_webhook_events TO casehug_owner
    USING (current_setting('app.job_worker', true) = 'on')
    WITH CHECK (current_setting('app.job_worker', true) = 'on');

-- Claims the unprocessed event due first (pending, or running with a lapsed lease: a rescue is a
-- new attempt, and one whose attempts are spent becomes failed instead). Returns it in
-- app_claim_job's shape (kind process_webhook_event, payload {"event_id"}), so the worker runs it
-- as it runs a job, and binds the transaction to its firm.
CREATE FUNCTION app_claim_webhook_event(p_lease_seconds double precision)
    RETURNS TABLE (
        id uuid, firm_id uuid, kind text, key text, priority smallint, payload jsonb, attempts integer,
        max_attempts integer, lease_id uuid, lease_until timestamptz, created_by uuid, created_at timestamptz
    )
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    candidate record;
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
        SELECT e.id, e.firm_id, e.attempts, e.max_attempts, e.lease_id, e.created_at INTO candidate
        FROM smokeball_webhook_events e
        WHERE NOT e.processed AND e.run_after <= now()
        ORDER BY e.run_after
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            PERFORM set_config('app.job_worker', '', true);
            RETURN;
        END IF;
        EXIT WHEN candidate.lease_id IS NULL OR candidate.attempts < candidate.max_attempts;
        -- An event whose every attempt lost its worker (one that crashes the worker, say) stops here.
        UPDATE smokeball_webhook_events e SET processed = true, processed_at = now(), status = 'failed',
            lease_id = NULL, lease_until = NULL,
            error_message = 'the worker processing it stopped responding on every attempt'
        WHERE e.id = candidate.id;
    END LOOP;
    UPDATE smokeball_webhook_events e SET attempts = e.attempts + 1, lease_id = lease, lease_until = expiry,
        run_after = expiry,
        error_message = CASE WHEN candidate.lease_id IS NOT NULL
            THEN 'the worker processing the previous attempt stopped responding' ELSE e.error_message END
    WHERE e.id = candidate.id;
    PERFORM set_config('app.job_worker', '', true);
    PERFORM set_config('app.firm_id', candidate.firm_id::text, true);
    id := candidate.id;
    firm_id := candidate.firm_id;
    kind := 'process_webhook_event';
    key := 'event:' || candidate.id::text;
    priority := 1;
    payload := jsonb_build_object('event_id', candidate.id);
    attempts := candidate.attempts + 1;
    max_attempts := candidate.max_attempts;
    lease_id := lease;
    lease_until := expiry;
    created_by := NULL;
    created_at := candidate.created_at;
    RETURN NEXT;
END
$$;

-- When the next unprocessed event falls due (NULL: none). An idle worker sleeps until then.
CREATE FUNCTION app_next_webhook_event_due()
    RETURNS timestamptz
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    due timestamptz;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    SELECT min(e.run_after) INTO due FROM smokeball_webhook_events e WHERE NOT e.processed;
    PERFORM set_config('app.job_worker', '', true);
    RETURN due;
END
$$;

-- The lease holder extends its lease. False when the lease is no longer this caller's. The
-- event may already carry its outcome (committed by the handler, before the worker's finish).
CREATE FUNCTION app_heartbeat_webhook_event(p_event uuid, p_lease uuid, p_lease_seconds double precision)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    expiry timestamptz := clock_timestamp() + make_interval(secs => p_lease_seconds);
    held boolean;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    UPDATE smokeball_webhook_events e SET lease_until = expiry,
        run_after = CASE WHEN e.processed THEN e.run_after ELSE expiry END
    WHERE e.id = p_event AND e.lease_id = p_lease;
    held := FOUND;
    PERFORM set_config('app.job_worker', '', true);
    RETURN held;
END
$$;

-- The lease holder is done: the handler committed the outcome with its change. One that ended
-- without an outcome (it cannot, but a claim must never come round again for nothing) is ignored.
CREATE FUNCTION app_finish_webhook_event(p_event uuid, p_lease uuid)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    held boolean;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    UPDATE smokeball_webhook_events e SET lease_id = NULL, lease_until = NULL, processed = true,
        processed_at = coalesce(e.processed_at, now()), status = coalesce(e.status, 'ignored')
    WHERE e.id = p_event AND e.lease_id = p_lease;
    held := FOUND;
    PERFORM set_config('app.job_worker', '', true);
    RETURN held;
END
$$;

-- The lease holder records a failure: a retryable one with attempts left is due again after
-- app_fail_job's back-off (keeping the error as the last one); otherwise the event is failed
-- with it. Returns 'pending' or 'dead' (the job statuses the worker logs), or NULL when the lease
-- is no longer this caller's.
CREATE FUNCTION app_fail_webhook_event(
    p_event uuid, p_lease uuid, p_error text, p_retryable boolean,
    p_backoff_seconds double precision, p_backoff_cap_seconds double precision
)
    RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    candidate record;
    message text := left(coalesce(nullif(p_error, ''), 'failed'), 1000);
    delay double precision;
    outcome text;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    SELECT e.processed, e.attempts, e.max_attempts INTO candidate FROM smokeball_webhook_events e
    WHERE e.id = p_event AND e.lease_id = p_lease FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM set_config('app.job_worker', '', true);
        RETURN NULL;
    END IF;
    IF candidate.processed THEN
        -- The handler recorded the failure itself (its last attempt, or one no retry can cure).
        UPDATE smokeball_webhook_events e SET lease_id = NULL, lease_until = NULL WHERE e.id = p_event;
        outcome := 'dead';
    ELSIF p_retryable AND candidate.attempts < candidate.max_attempts THEN
        delay := least(p_backoff_cap_seconds, p_backoff_seconds * power(2, candidate.attempts - 1));
        delay := delay * (0.5 + random() * 0.5);
        UPDATE smokeball_webhook_events e SET lease_id = NULL, lease_until = NULL, error_message = message,
            run_after = now() + make_interval(secs => delay)
        WHERE e.id = p_event;
        outcome := 'pending';
    ELSE
        UPDATE smokeball_webhook_events e SET lease_id = NULL, lease_until = NULL, processed = true,
            processed_at = now(), status = 'failed', error_message = message
        WHERE e.id = p_event;
        outcome := 'dead';
    END IF;
    PERFORM set_config('app.job_worker', '', true);
    RETURN outcome;
END
$$;

-- The lease holder gives the event back without spending an attempt (a worker asked to stop).
CREATE FUNCTION app_release_webhook_event(p_event uuid, p_lease uuid)
    RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    held boolean;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    UPDATE smokeball_webhook_events e SET lease_id = NULL, lease_until = NULL, run_after = now(),
        attempts = greatest(e.attempts - 1, 0)
    WHERE e.id = p_event AND e.lease_id = p_lease AND NOT e.processed;
    held := FOUND;
    PERFORM set_config('app.job_worker', '', true);
    RETURN CASE WHEN held THEN 'pending' END;
END
$$;

-- Binds the transaction to the event's firm while the caller's lease on it is live (as
-- app_enter_job does for a job); the event's processing runs under it. Returns the firm, or
-- nothing (and no firm set) once the lease lapsed or passed to another worker.
CREATE FUNCTION app_enter_webhook_event(p_event uuid, p_lease uuid)
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
    SELECT e.firm_id INTO firm FROM smokeball_webhook_events e
    WHERE e.id = p_event AND e.lease_id = p_lease AND e.lease_until > clock_timestamp();
    PERFORM set_config('app.job_worker', '', true);
    IF firm IS NOT NULL THEN
        PERFORM set_config('app.firm_id', firm::text, true);
    END IF;
    RETURN firm;
END
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'app_claim_webhook_event(double precision)', 'app_next_webhook_event_due()',
        'app_heartbeat_webhook_event(uuid, uuid, double precision)', 'app_finish_webhook_event(uuid, uuid)',
        'app_fail_webhook_event(uuid, uuid, text, boolean, double precision, double precision)',
        'app_release_webhook_event(uuid, uuid)', 'app_enter_webhook_event(uuid, uuid)'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO casehug_owner', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO casehug_worker', f);
    END LOOP;
END
$$;

-- 042's bind did its lookup through app_webhook_connection: two PL/pgSQL calls per delivery, one
-- inside the other. Now one SECURITY DEFINER function does that lookup itself, with the same
-- guarantee: the firm is bound only while p_sealed_key is the connection's current key, or its
-- previous one within the grace period; otherwise no firm is bound and the insert stores nothing.
CREATE OR REPLACE FUNCTION app_webhook_bind(p_account_id text, p_sealed_key bytea)
    RETURNS TABLE (firm_id uuid, key_current boolean)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found_firm uuid;
    current boolean;
BEGIN
    PERFORM set_config('app.firm_id', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.webhook_account_id', coalesce(p_account_id, ''), true);
    -- IS NOT DISTINCT FROM: a missing previous key must give false, not null.
    SELECT i.firm_id, p_sealed_key IS NOT NULL AND (p_sealed_key IS NOT DISTINCT FROM i.webhook_secret
            OR (i.webhook_secret_rotated_at > now() - interval '10 minutes'
                AND p_sealed_key IS NOT DISTINCT FROM i.previous_webhook_secret))
    INTO found_firm, current
    FROM public.firm_integrations i
    WHERE i.platform = 'smokeball' AND i.smokeball_account_id = p_account_id AND i.is_active
        AND i.webhook_secret IS NOT NULL;
    -- The lookup setting lives only as long as this function's read.
    PERFORM set_config('app.webhook_account_id', '', true);
    IF found_firm IS NULL THEN
        RETURN;
    END IF;
    IF current THEN
        PERFORM set_config('app.firm_id', found_firm::text, true);
    END IF;
    firm_id := found_firm;
    key_current := current;
    RETURN NEXT;
END
$$;
ALTER FUNCTION app_webhook_bind(text, bytea) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_webhook_bind(text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_webhook_bind(text, bytea) TO casehug_app;

-- Upgrade: the process_webhook_event jobs still waiting become their events' own state. An
-- event whose job waits (pending in back-off, or running) keeps its attempts and is due when the
-- job would have been; one whose job died without an outcome (its workers kept stopping) is
-- failed with the job's error. The jobs themselves are done with: their events carry the work.
-- Unprocessed events are pending in any case, so nothing a job was to do is lost.
UPDATE smokeball_webhook_events e SET attempts = j.attempts, max_attempts = greatest(j.max_attempts, 1),
    run_after = j.run_after
FROM jobs j
WHERE j.kind = 'process_webhook_event' AND j.status IN ('pending', 'running') AND NOT e.processed
    AND j.firm_id = e.firm_id AND j.key = 'event:' || e.id::text;
UPDATE smokeball_webhook_events e SET processed = true, processed_at = now(), status = 'failed',
    error_message = coalesce(j.last_error, 'failed'), attempts = j.attempts
FROM jobs j
WHERE j.kind = 'process_webhook_event' AND j.status = 'dead' AND NOT e.processed
    AND j.firm_id = e.firm_id AND j.key = 'event:' || e.id::text;
DELETE FROM jobs j WHERE j.kind = 'process_webhook_event' AND j.status IN ('pending', 'running', 'dead');

-- Operators: replaying events makes them pending again on the event queue (no job); the job
-- listing and the metrics show events in the queue as process_webhook_event work.
CREATE OR REPLACE FUNCTION ops_replay_webhooks(p_firm uuid, p_since timestamptz, p_until timestamptz)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    replayed integer;
BEGIN
    IF p_since IS NULL OR p_until IS NULL OR p_since >= p_until THEN
        RAISE EXCEPTION 'the range must be a start before an end' USING ERRCODE = '22023';
    END IF;
    PERFORM set_config('app.ops', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.firm_id', coalesce(p_firm::text, ''), true);
    IF NOT EXISTS (SELECT 1 FROM firms f WHERE f.id = p_firm) THEN
        PERFORM set_config('app.firm_id', '', true);
        RETURN NULL;
    END IF;
    -- An event being processed now loses its lease: that worker's writes no longer land (its
    -- app_enter_webhook_event binds nothing), and the next claim runs the event from the start.
    UPDATE smokeball_webhook_events e SET processed = false, processed_at = NULL, status = NULL,
        status_reason = NULL, error_message = NULL, attempts = 0, run_after = now(), lease_id = NULL, lease_until = NULL
    WHERE e.firm_id = p_firm AND e.created_at >= p_since AND e.created_at < p_until;
    GET DIAGNOSTICS replayed = ROW_COUNT;
    IF replayed > 0 THEN
        PERFORM pg_notify('casehug_jobs', '');
    END IF;
    PERFORM set_config('app.firm_id', '', true);
    RETURN replayed;
END
$$;

-- 043's listing, with the events in the queue as process_webhook_event work: pending or running
-- while unprocessed, dead when failed, succeeded when processed otherwise. Without a firm only
-- the states an index holds (the due index; 039's open index for failed ones).
CREATE OR REPLACE FUNCTION ops_jobs(p_firm uuid, p_states text[], p_kind text, p_limit integer)
    RETURNS TABLE (
        id uuid, firm_id uuid, kind text, status text, priority smallint, attempts integer, max_attempts integer,
        run_after timestamptz, created_at timestamptz, finished_at timestamptz, last_error text
    )
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    IF p_firm IS NULL AND NOT (p_states <@ ARRAY['pending', 'running', 'dead']) THEN
        RAISE EXCEPTION 'listing finished jobs needs a firm' USING ERRCODE = '22023';
    END IF;
    PERFORM set_config('app.job_worker', 'on', true);
    RETURN QUERY
    SELECT w.* FROM (
        SELECT j.id, j.firm_id, j.kind, j.status, j.priority, j.attempts, j.max_attempts, j.run_after, j.created_at,
            j.finished_at, j.last_error
        FROM jobs j
        WHERE j.status = ANY (p_states) AND (p_firm IS NULL OR j.firm_id = p_firm)
            AND (p_kind IS NULL OR j.kind = p_kind)
        UNION ALL
        SELECT e.id, e.firm_id, 'process_webhook_event'::text, s.status, 1::smallint, e.attempts, e.max_attempts,
            e.run_after, e.created_at, e.processed_at, e.error_message
        FROM smokeball_webhook_events e
        CROSS JOIN LATERAL (SELECT CASE
            WHEN NOT e.processed AND e.lease_id IS NULL THEN 'pending'
            WHEN NOT e.processed THEN 'running'
            WHEN e.status = 'failed' THEN 'dead'
            ELSE 'succeeded' END AS status) s
        WHERE (p_kind IS NULL OR p_kind = 'process_webhook_event') AND (p_firm IS NULL OR e.firm_id = p_firm)
            AND s.status = ANY (p_states)
            AND (p_firm IS NOT NULL OR NOT e.processed OR e.status = 'failed')
    ) w
    ORDER BY w.created_at DESC, w.id
    LIMIT greatest(1, least(coalesce(p_limit, 100), 10000));
    PERFORM set_config('app.job_worker', '', true);
END
$$;

-- 043's metrics: the queue depth and the oldest pending age count pending and running events as
-- process_webhook_event work, as they counted the jobs that carried them.
CREATE OR REPLACE FUNCTION ops_metrics()
    RETURNS TABLE (metric text, labels jsonb, value double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    PERFORM set_config('app.ops', 'on', true);
    RETURN QUERY
    SELECT 'casehug_jobs', jsonb_build_object('kind', j.kind, 'state', j.status), count(*)::float8
    FROM jobs j WHERE j.status IN ('pending', 'running') GROUP BY j.kind, j.status;
    RETURN QUERY
    SELECT 'casehug_jobs', jsonb_build_object('kind', 'process_webhook_event', 'state', s.state), count(*)::float8
    FROM smokeball_webhook_events e
    CROSS JOIN LATERAL (SELECT CASE WHEN e.lease_id IS NULL THEN 'pending' ELSE 'running' END AS state) s
    WHERE NOT e.processed GROUP BY s.state;
    RETURN QUERY
    SELECT 'casehug_jobs', jsonb_build_object('kind', j.kind, 'state', 'dead'), count(*)::float8
    FROM jobs j WHERE j.status = 'dead' GROUP BY j.kind;
    RETURN QUERY
    SELECT 'casehug_jobs_finished_total', jsonb_build_object('kind', c.kind, 'outcome', c.outcome),
        sum(c.count)::float8
    FROM ops_counters c WHERE c.metric = 'jobs_finished' GROUP BY c.kind, c.outcome;
    RETURN QUERY
    SELECT 'casehug_oldest_pending_job_age_seconds', '{}'::jsonb,
        coalesce(extract(epoch FROM now() - min(w.due)), 0)::float8
    FROM (
        SELECT min(j.run_after) AS due FROM jobs j WHERE j.status = 'pending' AND j.run_after <= now()
        UNION ALL
        SELECT min(e.run_after) FROM smokeball_webhook_events e
        WHERE NOT e.processed AND e.lease_id IS NULL AND e.run_after <= now()
    ) w;
    RETURN QUERY
    SELECT 'casehug_webhooks_accepted_total', '{}'::jsonb, coalesce(sum(t.n_tup_ins), 0)::float8
    FROM pg_stat_user_tables t WHERE t.relid = 'public.smokeball_webhook_events'::regclass;
    RETURN QUERY
    SELECT 'casehug_webhook_events_processed_total', jsonb_build_object('status', c.outcome), sum(c.count)::float8
    FROM ops_counters c WHERE c.metric = 'webhook_events_processed' GROUP BY c.outcome;
    RETURN QUERY
    SELECT 'casehug_webhook_events_open', jsonb_build_object('state', s.state), coalesce(c.n, 0)::float8
    FROM (VALUES ('unprocessed'), ('failed')) AS s (state)
    LEFT JOIN (
        SELECT CASE WHEN NOT e.processed THEN 'unprocessed' ELSE 'failed' END AS state, count(*) AS n
        FROM smokeball_webhook_events e WHERE NOT e.processed OR e.status = 'failed' GROUP BY 1
    ) c ON c.state = s.state;
    RETURN QUERY
    SELECT 'casehug_webhooks_refused_total', jsonb_build_object('reason', r.reason), coalesce(c.n, 0)::float8
    FROM (VALUES ('signature_missing'), ('signature_mismatch'), ('timestamp_skew'), ('unknown_account')) AS r (reason)
    LEFT JOIN (
        SELECT w.reason, sum(w.deliveries) AS n FROM smokeball_refused_webhooks w GROUP BY w.reason
        UNION ALL
        SELECT 'unknown_account', sum(g.deliveries) FROM smokeball_ignored_webhooks g
    ) c ON c.reason = r.reason;
    RETURN QUERY
    SELECT m.name, jsonb_build_object('client_id', b.client_id), m.value
    FROM smokeball_rate_buckets b CROSS JOIN LATERAL (VALUES
        ('casehug_rate_budget_tokens',
            least(b.capacity, b.tokens + greatest(0, extract(epoch FROM clock_timestamp() - b.updated_at)) * b.rate)),
        ('casehug_rate_budget_capacity', b.capacity),
        ('casehug_rate_budget_taken_total', b.taken::float8),
        ('casehug_rate_budget_waits_total', b.waits::float8),
        ('casehug_smokeball_rate_limited_total', b.rate_limited::float8)) AS m (name, value)
    WHERE m.value IS NOT NULL;
    RETURN QUERY
    SELECT 'casehug_connections', jsonb_build_object('state', s.state), count(i.firm_id)::float8
    FROM (VALUES ('connected'), ('needs_reconnect'), ('disconnected')) AS s (state)
    LEFT JOIN firm_integrations i ON i.platform = 'smokeball' AND s.state = CASE
        WHEN NOT i.is_active OR i.access_token IS NULL THEN 'disconnected'
        WHEN i.needs_reconnect_reason IS NOT NULL OR i.refresh_token_expires_at <= now() THEN 'needs_reconnect'
        ELSE 'connected' END
    GROUP BY s.state;
    PERFORM set_config('app.job_worker', '', true);
    PERFORM set_config('app.ops', '', true);
END
$$;
