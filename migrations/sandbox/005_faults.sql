-- Faults a test injects into the API, per path prefix (and optionally per partner): a share of
-- answers replaced by an error status, added latency, or the connection dropped mid-request.
CREATE TABLE sb_faults (
    id bigserial PRIMARY KEY,
    client_id text,
    path_prefix text NOT NULL CHECK (path_prefix LIKE '/%'),
    status integer CHECK (status IN (429, 500, 502, 503, 504)),
    share double precision NOT NULL DEFAULT 1 CHECK (share >= 0 AND share <= 1),
    latency_ms integer NOT NULL DEFAULT 0 CHECK (latency_ms >= 0 AND latency_ms <= 60000),
    drop_connection boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
