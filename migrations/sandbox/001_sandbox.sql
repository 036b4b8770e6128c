-- The Smokeball sandbox's own database (never the service's): registered OAuth clients, firm
-- accounts and their users, authorization codes, tokens, the shared rate-limit buckets, the
-- request log tests assert on, and the read-only matter-type catalogue. Secrets (client
-- secrets, API keys, codes, tokens) are stored only as SHA-256 digests.

CREATE TABLE sb_accounts (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    region text NOT NULL DEFAULT 'US' CHECK (region IN ('US', 'AU', 'UK')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sb_users (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    email text NOT NULL UNIQUE CHECK (email = lower(email)),
    first_name text NOT NULL,
    last_name text NOT NULL,
    -- HMAC-SHA256(salt, password): demo credentials only, documented in the README.
    password_salt bytea NOT NULL,
    password_digest bytea NOT NULL
);

CREATE TABLE sb_clients (
    client_id text PRIMARY KEY,
    secret_sha256 bytea NOT NULL,
    api_key_sha256 bytea NOT NULL UNIQUE,
    -- Exact matches only, as Cognito compares them.
    redirect_uris text[] NOT NULL,
    -- Token bucket of the partner (FACTS.md: 5/s, burst 5 by default).
    rate_per_second double precision NOT NULL DEFAULT 5 CHECK (rate_per_second > 0),
    burst double precision NOT NULL DEFAULT 5 CHECK (burst >= 1),
    access_ttl_seconds integer NOT NULL DEFAULT 3600 CHECK (access_ttl_seconds > 0),
    refresh_ttl_seconds integer NOT NULL DEFAULT 2592000 CHECK (refresh_ttl_seconds > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sb_auth_codes (
    code_sha256 bytea PRIMARY KEY,
    client_id text NOT NULL REFERENCES sb_clients (client_id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES sb_users (id) ON DELETE CASCADE,
    redirect_uri text NOT NULL,
    -- base64url(SHA-256(verifier)) when the authorize request sent one (S256 only).
    code_challenge text,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);

CREATE TABLE sb_tokens (
    token_sha256 bytea PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('access', 'refresh')),
    client_id text NOT NULL REFERENCES sb_clients (client_id) ON DELETE CASCADE,
    -- NULL for client-credentials tokens, which name the account in the URL instead.
    account_id uuid REFERENCES sb_accounts (id) ON DELETE CASCADE,
    user_id uuid REFERENCES sb_users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sb_tokens_grant_idx ON sb_tokens (client_id, account_id) WHERE kind = 'refresh';

-- One row per client, shared by every sandbox process: the rate limit is the partner's.
CREATE TABLE sb_rate_buckets (
    client_id text PRIMARY KEY REFERENCES sb_clients (client_id) ON DELETE CASCADE,
    tokens double precision NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Every API request as tests see it: "exactly one create", "never above the rate".
CREATE TABLE sb_requests (
    id bigserial PRIMARY KEY,
    client_id text,
    method text NOT NULL,
    path text NOT NULL,
    request_id text,
    status integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE sb_matter_types (
    id uuid PRIMARY KEY,
    version_id uuid NOT NULL,
    name text NOT NULL,
    category text NOT NULL,
    -- US: two-letter state code; AU: state shorthand (NSW, VIC, ...); UK: nation (ENG, SCT).
    location text NOT NULL,
    region text NOT NULL CHECK (region IN ('US', 'AU', 'UK')),
    -- 0 matter type, 1 lead type (TypeCategory in the spec).
    type integer NOT NULL DEFAULT 0 CHECK (type IN (0, 1)),
    representative_options text[] NOT NULL,
    is_deleted boolean NOT NULL DEFAULT false
);
CREATE INDEX sb_matter_types_location_idx ON sb_matter_types (location, category);
