-- Download links of uploaded files: like a pre-signed S3 GET URL, a secret that works (any
-- number of times) until it expires. Only its digest is kept.
CREATE TABLE sb_downloads (
    token_sha256 bytea PRIMARY KEY,
    file_id uuid NOT NULL REFERENCES sb_files (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sb_downloads_file_idx ON sb_downloads (file_id);
