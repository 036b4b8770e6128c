-- 026: the partner's one Smokeball rate limit, shared by every process on every host.
--
-- Smokeball meters the partner (client id), not a process: a token bucket per client id, kept
-- here. Firm-independent (no firm_id, so no row-level security), owned by casehug_owner like
-- every relation. The app role gets no rights on the table, only EXECUTE on the SECURITY DEFINER
-- function that takes one token atomically (the row lock serialises concurrent takers) and
-- otherwise says how long to wait.

CREATE TABLE smokeball_rate_buckets (
    client_id text PRIMARY KEY,
    tokens double precision NOT NULL,
    updated_at timestamptz NOT NULL
);
ALTER TABLE smokeball_rate_buckets OWNER TO casehug_owner;
REVOKE ALL ON smokeball_rate_buckets FROM PUBLIC;

-- Returns 0 when a token was taken, else the seconds until one is due. Interactive callers take
-- the bucket's last token; background callers only take when at least two are there (when the
-- capacity allows), so a click never waits behind background work.
CREATE FUNCTION smokeball_take_token(
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
    -- NaN compares greater than every number in PostgreSQL, so it is named explicitly.
    IF p_client_id IS NULL OR p_client_id = '' OR NOT (p_rate > 0) OR NOT (p_capacity >= 1)
       OR p_rate IN ('Infinity'::float8, 'NaN'::float8) OR p_capacity IN ('Infinity'::float8, 'NaN'::float8) THEN
        RAISE EXCEPTION 'smokeball_take_token: invalid arguments' USING ERRCODE = '22023';
    END IF;
    INSERT INTO public.smokeball_rate_buckets (client_id, tokens, updated_at)
    VALUES (p_client_id, p_capacity, clock_timestamp())
    ON CONFLICT (client_id) DO NOTHING;
    SELECT b.tokens, b.updated_at INTO stored, stamped
    FROM public.smokeball_rate_buckets b WHERE b.client_id = p_client_id FOR UPDATE;
    -- The time is read after the lock is held, so it never runs behind the row's stamp.
    now_ts := clock_timestamp();
    available := least(p_capacity, stored + greatest(0, extract(epoch FROM now_ts - stamped)) * p_rate);
    needed := CASE WHEN p_interactive OR p_capacity < 2 THEN 1 ELSE 2 END;
    IF available >= needed THEN
        UPDATE public.smokeball_rate_buckets SET tokens = available - 1, updated_at = now_ts
        WHERE client_id = p_client_id;
        RETURN 0;
    END IF;
    UPDATE public.smokeball_rate_buckets SET tokens = available, updated_at = now_ts WHERE client_id = p_client_id;
    RETURN (needed - available) / p_rate;
END
$$;
ALTER FUNCTION smokeball_take_token(text, double precision, double precision, boolean) OWNER TO casehug_owner;
REVOKE ALL ON FUNCTION smokeball_take_token(text, double precision, double precision, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smokeball_take_token(text, double precision, double precision, boolean) TO casehug_app;
