-- 038: nightly reconciliation (issue #13, item 4).
--
-- Once a day per connected firm, at a time the worker is configured with, a `reconcile_firm`
-- job reads what changed in Smokeball since the last run and applies what webhooks missed. Each
-- run is a row here, unique per (firm, day): that key is what makes the schedule exactly once a
-- day however many workers (on however many machines) ask at the same moment. The worker asks
-- through app_schedule_reconciliations, which records the due runs and enqueues their jobs in
-- one transaction, so a run exists exactly when its job does.

CREATE TABLE smokeball_reconciliations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    -- The UTC day whose scheduled time this run is for.
    run_date date NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'needs_reconnect')),
    job_id uuid,
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    -- The first attempt's start: the next run reads changes since this (minus the margin).
    started_at timestamptz,
    finished_at timestamptz,
    -- Changes since this time (the margin already taken off) were read.
    watermark timestamptz,
    matters_read integer NOT NULL DEFAULT 0 CHECK (matters_read >= 0),
    contacts_read integer NOT NULL DEFAULT 0 CHECK (contacts_read >= 0),
    -- CaseHug rows changed and subscriptions recreated: what webhooks had missed.
    drift integer NOT NULL DEFAULT 0 CHECK (drift >= 0),
    -- Counts and ids only (no PHI), for people and the status route.
    summary jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(summary) = 'object'),
    -- Readable, composed by the service: no PHI, no secrets.
    error text CHECK (octet_length(error) <= 1000),
    CONSTRAINT smokeball_reconciliations_firm_day_key UNIQUE (firm_id, run_date),
    CONSTRAINT smokeball_reconciliations_firm_id_id_key UNIQUE (firm_id, id),
    CONSTRAINT smokeball_reconciliations_job_fkey FOREIGN KEY (firm_id, job_id)
        REFERENCES jobs (firm_id, id) ON DELETE SET NULL (job_id)
);
ALTER TABLE smokeball_reconciliations OWNER TO casehug_owner;
ALTER TABLE smokeball_reconciliations ENABLE ROW LEVEL SECURITY;
ALTER TABLE smokeball_reconciliations FORCE ROW LEVEL SECURITY;
CREATE POLICY smokeball_reconciliations_tenant ON smokeball_reconciliations
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());
-- The scheduler reads every firm's runs (which days are done) only inside
-- app_schedule_reconciliations, which alone sets the setting, for casehug_owner alone.
CREATE POLICY smokeball_reconciliations_scheduler ON smokeball_reconciliations FOR SELECT TO casehug_owner
    USING (current_setting('app.reconciliation_scheduler', true) = 'on');
CREATE POLICY firm_integrations_reconciliation_scheduler ON firm_integrations FOR SELECT TO casehug_owner
    USING (current_setting('app.reconciliation_scheduler', true) = 'on');

-- The status route reads its firm's runs; the job (worker role) records its own.
GRANT SELECT ON smokeball_reconciliations TO casehug_app;
GRANT UPDATE ON smokeball_reconciliations TO casehug_worker;

-- Records a run, and enqueues its `reconcile_firm` job, for every firm that is due: connected
-- (active, a token, no reconnect needed) since before the latest scheduled time (p_time, UTC, on
-- or before now), with no run for that time's day yet. A firm connected after that time waits
-- for the next one; a worker that was down over several scheduled times schedules only the
-- latest (a missed day runs once, not once per missed day). Concurrent callers are settled by
-- the (firm, day) key: the insert that loses does nothing and enqueues nothing. Returns how many
-- runs it scheduled and the seconds until the next scheduled time, when the worker asks again.
-- p_now: the time to schedule as of (default now(); tests name one, away from midnight).
CREATE FUNCTION app_schedule_reconciliations(p_time time, p_now timestamptz DEFAULT NULL)
    RETURNS TABLE (scheduled integer, next_in_seconds double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    now_utc timestamp := coalesce(p_now, now()) AT TIME ZONE 'UTC';
    latest timestamp;
    run_day date;
    due uuid[];
    firm uuid;
    run uuid;
    job uuid;
    made integer := 0;
BEGIN
    IF p_time IS NULL THEN
        RAISE EXCEPTION 'a reconciliation time is needed' USING ERRCODE = '22023';
    END IF;
    latest := date_trunc('day', now_utc) + p_time;
    IF latest > now_utc THEN
        latest := latest - interval '1 day';
    END IF;
    run_day := latest::date;
    PERFORM set_config('app.firm_id', '', true);
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.reconciliation_scheduler', 'on', true);
    SELECT coalesce(array_agg(i.firm_id ORDER BY i.firm_id), '{}') INTO due
    FROM firm_integrations i
    WHERE i.platform = 'smokeball' AND i.is_active AND i.access_token IS NOT NULL
      AND i.needs_reconnect_reason IS NULL AND i.connected_at <= latest AT TIME ZONE 'UTC'
      AND NOT EXISTS (
          SELECT 1 FROM smokeball_reconciliations r WHERE r.firm_id = i.firm_id AND r.run_date = run_day);
    PERFORM set_config('app.reconciliation_scheduler', '', true);
    FOREACH firm IN ARRAY due LOOP
        -- Each firm's run and job are written as that firm, under the tenant policies.
        PERFORM set_config('app.firm_id', firm::text, true);
        run := NULL;
        INSERT INTO smokeball_reconciliations (firm_id, run_date) VALUES (firm, run_day)
        ON CONFLICT (firm_id, run_date) DO NOTHING
        RETURNING id INTO run;
        IF run IS NOT NULL THEN
            job := app_enqueue_job('reconcile_firm', 'reconcile:' || run_day::text,
                jsonb_build_object('run_id', run), 2::smallint, NULL, 5);
            UPDATE smokeball_reconciliations r SET job_id = job WHERE r.id = run AND r.firm_id = firm;
            made := made + 1;
        END IF;
    END LOOP;
    PERFORM set_config('app.firm_id', '', true);
    scheduled := made;
    next_in_seconds := extract(epoch FROM (latest + interval '1 day') - now_utc)::float8;
    RETURN NEXT;
END
$$;
ALTER FUNCTION app_schedule_reconciliations(time, timestamptz) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION app_schedule_reconciliations(time, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_schedule_reconciliations(time, timestamptz) TO casehug_worker;
