-- 043: operations (issue #14, items 3 and 4): casehug-admin's ops commands and metrics.
--
-- Operators need every firm's connections, jobs and counts, but row-level security fails closed
-- and every process refuses a superuser or BYPASSRLS role. So the ops commands log in as
-- casehug_ops: a role with no rights on any table, only EXECUTE on the ops_* functions below.
-- Each is SECURITY DEFINER (it runs as casehug_owner, to which FORCE applies) and narrow: one
-- listing or one action. They read across firms only while one of them has switched app.ops on
-- for its own statements (policies TO casehug_owner, the pattern of 030's jobs_worker and 038's
-- scheduler: another role setting app.ops gains nothing), and they write a firm's rows only
-- bound to that firm, under its tenant policy. Jobs are reached as the queue functions do
-- (app.job_worker).
--
-- Counters. Counting rows at each scrape costs what the rows cost (at 1,000 deliveries a second
-- a 5-minute window is 300,000 events and seconds of reading), so every count that grows with
-- traffic is a counter, kept where writing it costs least, and never on the accept path:
--   * webhook deliveries stored: PostgreSQL's own count of rows inserted into the events table
--     (pg_stat_user_tables.n_tup_ins; it restarts from zero with the server's statistics, which
--     Prometheus counters allow);
--   * jobs reaching an outcome and webhook events processed: a trigger on the worker's update
--     adds one to a counter row (one of eight per label set, by backend, so workers rarely wait
--     on one another's row lock);
--   * Smokeball calls: the rate bucket's row, written by every token take already, counts takes,
--     waits and 429s;
--   * refused deliveries (bad or missing signature, skewed clock): a counter row written only on
--     the refusal path, without waiting for the WAL flush; unknown accounts were already counted
--     (035's smokeball_ignored_webhooks).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'casehug_ops') THEN
        CREATE ROLE casehug_ops NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
ALTER ROLE casehug_ops NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
GRANT USAGE ON SCHEMA public TO casehug_ops;

CREATE POLICY firms_ops ON firms FOR SELECT TO casehug_owner
    USING (current_setting('app.ops', true) = 'on');
CREATE POLICY firm_integrations_ops ON firm_integrations FOR SELECT TO casehug_owner
    USING (current_setting('app.ops', true) = 'on');
CREATE POLICY oauth_states_ops ON oauth_states FOR SELECT TO casehug_owner
    USING (current_setting('app.ops', true) = 'on');
CREATE POLICY smokeball_webhook_events_ops ON smokeball_webhook_events FOR SELECT TO casehug_owner
    USING (current_setting('app.ops', true) = 'on');

-- Metrics count dead jobs (few, kept until retried) through this; an enqueue never enters it.
CREATE INDEX jobs_dead_idx ON jobs (kind) WHERE status = 'dead';

-- ---------------------------------------------------------------------------------------------
-- Counters.

ALTER TABLE smokeball_rate_buckets ADD COLUMN rate double precision;
ALTER TABLE smokeball_rate_buckets ADD COLUMN capacity double precision;
ALTER TABLE smokeball_rate_buckets ADD COLUMN taken bigint NOT NULL DEFAULT 0;
ALTER TABLE smokeball_rate_buckets ADD COLUMN waits bigint NOT NULL DEFAULT 0;
ALTER TABLE smokeball_rate_buckets ADD COLUMN rate_limited bigint NOT NULL DEFAULT 0;

-- 026's function; its two UPDATEs also count (the same row write, nothing added) and keep the
-- rate and capacity, so metrics can say what the bucket holds now.
CREATE OR REPLACE FUNCTION smokeball_take_token(
    p_client_id text, p_rate double precision, p_capacity double precision, p_interactive boolean)
    RETURNS double precision
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    stored double precision;
    stamped timestamptz;
    now_ts timestamptz;
    available double precision;
    needed double precision;
BEGIN
    IF p_client_id IS NULL OR p_client_id = '' OR NOT (p_rate > 0) OR NOT (p_capacity >= 1)
       OR p_rate IN ('Infinity'::float8, 'NaN'::float8) OR p_capacity IN ('Infinity'::float8, 'NaN'::float8) THEN
        RAISE EXCEPTION 'smokeball_take_token: invalid arguments' USING ERRCODE = '22023';
    END IF;
    INSERT INTO public.smokeball_rate_buckets (client_id, tokens, updated_at)
    VALUES (p_client_id, p_capacity, clock_timestamp())
    ON CONFLICT (client_id) DO NOTHING;
    SELECT b.tokens, b.updated_at INTO stored, stamped
    FROM public.smokeball_rate_buckets b WHERE b.client_id = p_client_id FOR UPDATE;
    now_ts := clock_timestamp();
    available := least(p_capacity, stored + greatest(0, extract(epoch FROM now_ts - stamped)) * p_rate);
    needed := CASE WHEN p_interactive OR p_capacity < 2 THEN 1 ELSE 2 END;
    IF available >= needed THEN
        UPDATE public.smokeball_rate_buckets SET tokens = available - 1, updated_at = now_ts,
            rate = p_rate, capacity = p_capacity, taken = taken + 1
        WHERE client_id = p_client_id;
        RETURN 0;
    END IF;
    UPDATE public.smokeball_rate_buckets SET tokens = available, updated_at = now_ts,
        rate = p_rate, capacity = p_capacity, waits = waits + 1
    WHERE client_id = p_client_id;
    RETURN (needed - available) / p_rate;
END
$$;
ALTER FUNCTION smokeball_take_token(text, double precision, double precision, boolean) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION smokeball_take_token(text, double precision, double precision, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smokeball_take_token(text, double precision, double precision, boolean) TO casehug_app;

-- Smokeball answered 429 to a call that took a token from this bucket.
CREATE FUNCTION smokeball_record_rate_limited(p_client_id text)
    RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
    UPDATE public.smokeball_rate_buckets SET rate_limited = rate_limited + 1 WHERE client_id = p_client_id;
$$;
ALTER FUNCTION smokeball_record_rate_limited(text) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION smokeball_record_rate_limited(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smokeball_record_rate_limited(text) TO casehug_app;

-- Refused deliveries by reason. Eight slots per reason (by backend), so concurrent refusals
-- rarely wait for one another's row lock; metrics add the slots up.
CREATE TABLE smokeball_refused_webhooks (
    reason text NOT NULL CHECK (reason IN ('signature_missing', 'signature_mismatch', 'timestamp_skew')),
    slot smallint NOT NULL CHECK (slot BETWEEN 0 AND 7),
    deliveries bigint NOT NULL DEFAULT 1 CHECK (deliveries > 0),
    last_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reason, slot)
);
ALTER TABLE smokeball_refused_webhooks OWNER TO casehug_owner;

-- A counter, not a record: losing the last few on a crash is fine, so the refusal does not wait
-- for its WAL flush (synchronous_commit off for this transaction only).
CREATE FUNCTION app_record_refused_webhook(p_reason text)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO public.smokeball_refused_webhooks AS w (reason, slot)
    VALUES (p_reason, (pg_backend_pid() % 8)::smallint)
    ON CONFLICT (reason, slot) DO UPDATE SET deliveries = w.deliveries + 1, last_at = now();
END
$$;
ALTER FUNCTION app_record_refused_webhook(text) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_record_refused_webhook(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_record_refused_webhook(text) TO casehug_app;

-- Outcomes: jobs by (kind, final status), webhook events by processing status.
CREATE TABLE ops_counters (
    metric text NOT NULL CHECK (metric IN ('jobs_finished', 'webhook_events_processed')),
    kind text NOT NULL,
    outcome text NOT NULL,
    slot smallint NOT NULL CHECK (slot BETWEEN 0 AND 7),
    count bigint NOT NULL DEFAULT 1 CHECK (count > 0),
    PRIMARY KEY (metric, kind, outcome, slot)
);
ALTER TABLE ops_counters OWNER TO casehug_owner;

CREATE FUNCTION ops_count_outcome() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    IF TG_TABLE_NAME = 'jobs' THEN
        INSERT INTO public.ops_counters AS c (metric, kind, outcome, slot)
        VALUES ('jobs_finished', NEW.kind, NEW.status, (pg_backend_pid() % 8)::smallint)
        ON CONFLICT (metric, kind, outcome, slot) DO UPDATE SET count = c.count + 1;
    ELSE
        INSERT INTO public.ops_counters AS c (metric, kind, outcome, slot)
        VALUES ('webhook_events_processed', '', coalesce(NEW.status, 'unknown'), (pg_backend_pid() % 8)::smallint)
        ON CONFLICT (metric, kind, outcome, slot) DO UPDATE SET count = c.count + 1;
    END IF;
    RETURN NULL;
END
$$;
ALTER FUNCTION ops_count_outcome() OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION ops_count_outcome() FROM PUBLIC;

-- Only the transition counts: an enqueue that joins a pending job (ON CONFLICT DO UPDATE) and
-- every other update leave the WHEN false.
CREATE TRIGGER jobs_count_outcome AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'dead', 'superseded') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION ops_count_outcome();
CREATE TRIGGER smokeball_webhook_events_count_outcome AFTER UPDATE OF processed ON smokeball_webhook_events
    FOR EACH ROW WHEN (NEW.processed AND NOT OLD.processed)
    EXECUTE FUNCTION ops_count_outcome();

-- ---------------------------------------------------------------------------------------------
-- Reading.

-- Every Smokeball connection, or one firm's (p_firm).
CREATE FUNCTION ops_connections(p_firm uuid DEFAULT NULL)
    RETURNS TABLE (
        firm_id uuid, firm_name text, account_id text, region text, is_active boolean, connected_at timestamptz,
        token_expires_at timestamptz, refresh_token_expires_at timestamptz, needs_reconnect boolean,
        needs_reconnect_reason text
    )
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM set_config('app.ops', 'on', true);
    RETURN QUERY
    SELECT i.firm_id, f.name::text, i.smokeball_account_id, i.region, i.is_active, i.connected_at,
        i.token_expires_at, i.refresh_token_expires_at,
        i.is_active AND (i.needs_reconnect_reason IS NOT NULL OR i.refresh_token_expires_at <= now()),
        CASE WHEN i.is_active THEN coalesce(i.needs_reconnect_reason,
            CASE WHEN i.refresh_token_expires_at <= now() THEN 'refresh_token_expired' END) END
    FROM firm_integrations i JOIN firms f ON f.id = i.firm_id
    WHERE i.platform = 'smokeball' AND (p_firm IS NULL OR i.firm_id = p_firm)
    ORDER BY f.name, i.firm_id;
    PERFORM set_config('app.ops', '', true);
END
$$;

-- Does the firm exist? (Ops commands say "unknown firm" rather than doing nothing.)
CREATE FUNCTION ops_firm_exists(p_firm uuid)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found boolean;
BEGIN
    PERFORM set_config('app.ops', 'on', true);
    SELECT EXISTS (SELECT 1 FROM firms f WHERE f.id = p_firm) INTO found;
    PERFORM set_config('app.ops', '', true);
    RETURN found;
END
$$;

-- Jobs, newest first. Without a firm only the states an index holds (pending, running, dead);
-- with one, any state (the firm's created_at index).
CREATE FUNCTION ops_jobs(p_firm uuid, p_states text[], p_kind text, p_limit integer)
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
    SELECT j.id, j.firm_id, j.kind, j.status, j.priority, j.attempts, j.max_attempts, j.run_after, j.created_at,
        j.finished_at, j.last_error
    FROM jobs j
    WHERE j.status = ANY (p_states) AND (p_firm IS NULL OR j.firm_id = p_firm) AND (p_kind IS NULL OR j.kind = p_kind)
    ORDER BY j.created_at DESC, j.id
    LIMIT greatest(1, least(coalesce(p_limit, 100), 10000));
    PERFORM set_config('app.job_worker', '', true);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Acting on jobs.

-- A dead job runs again from scratch; a pending one in back-off runs now. Returns the status it
-- was in and the id of the pending job that will do the work (itself, or the pending job with
-- its key that superseded it); nothing for an unknown job.
CREATE FUNCTION ops_retry_job(p_job uuid)
    RETURNS TABLE (was text, job_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    candidate public.jobs%ROWTYPE;
    outcome text;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    SELECT * INTO candidate FROM jobs j WHERE j.id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM set_config('app.job_worker', '', true);
        RETURN;
    END IF;
    was := candidate.status;
    job_id := NULL;
    IF candidate.status = 'dead' THEN
        outcome := jobs_requeue(p_job, now(), 0, candidate.last_error);
        IF outcome = 'pending' THEN
            job_id := p_job;
        ELSE
            SELECT j.id INTO job_id FROM jobs j WHERE j.firm_id = candidate.firm_id AND j.kind = candidate.kind
                AND j.key = candidate.key AND j.status = 'pending';
        END IF;
    ELSIF candidate.status = 'pending' THEN
        UPDATE jobs j SET run_after = least(j.run_after, now()), updated_at = now() WHERE j.id = p_job;
        PERFORM pg_notify('casehug_jobs', '');
        job_id := p_job;
    END IF;
    PERFORM set_config('app.job_worker', '', true);
    RETURN NEXT;
END
$$;

-- A pending job will not run: it becomes dead with an operator's note (and can be retried like
-- any dead job). A running job cannot be taken from its worker. Returns the status it was in
-- and the one it is in now; nothing for an unknown job.
CREATE FUNCTION ops_cancel_job(p_job uuid)
    RETURNS TABLE (was text, now_status text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    candidate public.jobs%ROWTYPE;
BEGIN
    PERFORM set_config('app.job_worker', 'on', true);
    SELECT * INTO candidate FROM jobs j WHERE j.id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM set_config('app.job_worker', '', true);
        RETURN;
    END IF;
    was := candidate.status;
    now_status := candidate.status;
    IF candidate.status = 'pending' THEN
        UPDATE jobs j SET status = 'dead', last_error = 'cancelled by an operator', finished_at = now(),
            updated_at = now()
        WHERE j.id = p_job;
        now_status := 'dead';
    END IF;
    PERFORM set_config('app.job_worker', '', true);
    RETURN NEXT;
END
$$;

-- Enqueues one of the firm-wide jobs an operator may start (the kinds the sync route's firm
-- admins start: sync_matters, pull_matters, import_matters), bound to the firm, for a firm
-- whose connection can take work. Returns (job_id, problem): problem is unknown_firm or
-- not_connected when nothing was enqueued.
CREATE FUNCTION ops_enqueue_firm_job(p_firm uuid, p_kind text, p_key text, p_payload jsonb, p_priority smallint)
    RETURNS TABLE (job_id uuid, problem text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('sync_matters', 'pull_matters', 'import_matters') THEN
        RAISE EXCEPTION 'ops may not enqueue this kind' USING ERRCODE = '42501';
    END IF;
    PERFORM set_config('app.ops', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.firm_id', coalesce(p_firm::text, ''), true);
    IF NOT EXISTS (SELECT 1 FROM firms f WHERE f.id = p_firm) THEN
        PERFORM set_config('app.firm_id', '', true);
        problem := 'unknown_firm';
        RETURN NEXT;
        RETURN;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM firm_integrations i
        WHERE i.firm_id = p_firm AND i.platform = 'smokeball' AND i.is_active AND i.access_token IS NOT NULL
    ) THEN
        PERFORM set_config('app.firm_id', '', true);
        problem := 'not_connected';
        RETURN NEXT;
        RETURN;
    END IF;
    job_id := app_enqueue_job(p_kind, p_key, p_payload, p_priority);
    PERFORM set_config('app.firm_id', '', true);
    RETURN NEXT;
END
$$;

-- Processes the firm's stored webhook events received in [p_since, p_until) again: each is
-- marked unprocessed and its process_webhook_event job enqueued (joining a pending one). Safe
-- to repeat: processing re-reads the resource from Smokeball and applies it only when its
-- versionId is newer than what the matter holds. Returns how many events; NULL: unknown firm.
CREATE FUNCTION ops_replay_webhooks(p_firm uuid, p_since timestamptz, p_until timestamptz)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    event uuid;
    replayed integer := 0;
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
    FOR event IN
        UPDATE smokeball_webhook_events e SET processed = false, processed_at = NULL, status = NULL,
            error_message = NULL
        WHERE e.firm_id = p_firm AND e.created_at >= p_since AND e.created_at < p_until
        RETURNING e.id
    LOOP
        PERFORM app_enqueue_job('process_webhook_event', 'event:' || event::text,
            jsonb_build_object('event_id', event), 1::smallint, NULL, 5, false);
        replayed := replayed + 1;
    END LOOP;
    IF replayed > 0 THEN
        PERFORM pg_notify('casehug_jobs', '');
    END IF;
    PERFORM set_config('app.firm_id', '', true);
    RETURN replayed;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Re-sealing under a new key (rotate-encryption-key).

-- Sealed values whose key id (the second byte of the format) is not p_key_id, in a stable order
-- after the cursor (p_after_source, p_after_row, p_after_column), at most p_limit. Rows re-sealed
-- meanwhile no longer match; a value that could not be opened is passed by the cursor.
CREATE FUNCTION ops_sealed_values(
    p_key_id integer, p_after_source text, p_after_row uuid, p_after_column text, p_limit integer)
    RETURNS TABLE (source text, row_id uuid, column_name text, firm_id uuid, platform text, sealed bytea)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM set_config('app.ops', 'on', true);
    RETURN QUERY
    SELECT v.source, v.row_id, v.column_name, v.firm_id, v.platform, v.sealed
    FROM (
        SELECT 'firm_integrations'::text AS source, i.id AS row_id, c.name AS column_name, i.firm_id, i.platform,
            c.value AS sealed
        FROM firm_integrations i
        CROSS JOIN LATERAL (VALUES ('access_token', i.access_token), ('refresh_token', i.refresh_token),
            ('webhook_secret', i.webhook_secret), ('previous_webhook_secret', i.previous_webhook_secret)) AS c (name, value)
        UNION ALL
        SELECT 'oauth_states', s.id, 'code_verifier', s.firm_id, s.platform, s.code_verifier FROM oauth_states s
    ) v
    WHERE v.sealed IS NOT NULL AND (octet_length(v.sealed) < 2 OR get_byte(v.sealed, 1) <> p_key_id)
      AND (p_after_source IS NULL OR (v.source, v.row_id, v.column_name) > (p_after_source, p_after_row, p_after_column))
    ORDER BY v.source, v.row_id, v.column_name
    LIMIT greatest(1, least(coalesce(p_limit, 100), 10000));
    PERFORM set_config('app.ops', '', true);
END
$$;

-- Replaces one sealed value, only if it still holds p_old (a route that stored a new token
-- meanwhile keeps its own). Written bound to the row's firm. True when replaced.
CREATE FUNCTION ops_reseal(p_source text, p_row uuid, p_column text, p_firm uuid, p_old bytea, p_new bytea)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    done boolean;
BEGIN
    IF NOT ((p_source = 'firm_integrations'
            AND p_column IN ('access_token', 'refresh_token', 'webhook_secret', 'previous_webhook_secret'))
        OR (p_source = 'oauth_states' AND p_column = 'code_verifier')) OR p_new IS NULL THEN
        RAISE EXCEPTION 'not a sealed column' USING ERRCODE = '22023';
    END IF;
    PERFORM set_config('app.ops', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.firm_id', coalesce(p_firm::text, ''), true);
    EXECUTE format('UPDATE public.%I SET %I = $1 WHERE id = $2 AND firm_id = $3 AND %I = $4', p_source, p_column,
        p_column)
        USING p_new, p_row, p_firm, p_old;
    GET DIAGNOSTICS done = ROW_COUNT;
    PERFORM set_config('app.firm_id', '', true);
    RETURN done;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Health and metrics.

-- The migrations applied (check compares them with the files). The migrator's own table is
-- granted to nobody else; the owner of this function may read it.
GRANT SELECT ON schema_migrations TO casehug_owner;
CREATE FUNCTION ops_applied_migrations()
    RETURNS TABLE (version integer, name text)
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$ SELECT m.version, m.name FROM public.schema_migrations m ORDER BY m.version $$;

-- Every figure `casehug-admin metrics` prints, as (metric, labels, value). Each part is an index
-- scan of what is waiting (pending, running, dead jobs; unprocessed or failed events) or a read of
-- a small table; none grows with the history (docs/operations.md, "Metrics").
CREATE FUNCTION ops_metrics()
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
    SELECT 'casehug_jobs', jsonb_build_object('kind', j.kind, 'state', 'dead'), count(*)::float8
    FROM jobs j WHERE j.status = 'dead' GROUP BY j.kind;
    RETURN QUERY
    SELECT 'casehug_jobs_finished_total', jsonb_build_object('kind', c.kind, 'outcome', c.outcome),
        sum(c.count)::float8
    FROM ops_counters c WHERE c.metric = 'jobs_finished' GROUP BY c.kind, c.outcome;
    RETURN QUERY
    SELECT 'casehug_oldest_pending_job_age_seconds', '{}'::jsonb,
        coalesce(extract(epoch FROM now() - min(j.run_after)), 0)::float8
    FROM jobs j WHERE j.status = 'pending' AND j.run_after <= now();
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

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'ops_connections(uuid)', 'ops_firm_exists(uuid)', 'ops_jobs(uuid, text[], text, integer)',
        'ops_retry_job(uuid)', 'ops_cancel_job(uuid)',
        'ops_enqueue_firm_job(uuid, text, text, jsonb, smallint)',
        'ops_replay_webhooks(uuid, timestamptz, timestamptz)',
        'ops_sealed_values(integer, text, uuid, text, integer)',
        'ops_reseal(text, uuid, text, uuid, bytea, bytea)', 'ops_applied_migrations()', 'ops_metrics()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO casehug_owner', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO casehug_ops', f);
    END LOOP;
END
$$;
