-- Access tokens shaped like Cognito's (issue #11): signed JWTs whose claims name the user who
-- signed in. The signing key is the sandbox's own (one row, made here from PostgreSQL's strong
-- random source through two v4 UUIDs: 244 random bits); nothing verifies it but tests.
-- A refresh token keeps what every access token refreshed from it repeats, as Cognito does:
-- the sign-in's time (`auth_time`), its `origin_jti` and `event_id`.
-- The request log also keeps calls to the token endpoint, with their grant type (never a code,
-- token, secret or verifier), so tests can count token requests.
CREATE TABLE sb_signing_key (
    id smallint PRIMARY KEY CHECK (id = 1),
    secret bytea NOT NULL CHECK (length(secret) >= 32)
);
INSERT INTO sb_signing_key (id, secret)
VALUES (1, decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

ALTER TABLE sb_tokens ADD COLUMN auth_time timestamptz;
ALTER TABLE sb_tokens ADD COLUMN origin_jti uuid;
ALTER TABLE sb_tokens ADD COLUMN event_id uuid;

ALTER TABLE sb_requests ADD COLUMN grant_type text
    CHECK (grant_type IN ('authorization_code', 'refresh_token', 'client_credentials'));

-- A staff member has its own id, distinct from its user's (`userId`, what a token's `username`
-- names), as on Smokeball: an integration that looks the signing-in user up by staff id finds
-- nothing here either.
ALTER TABLE sb_users ADD COLUMN staff_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid();
