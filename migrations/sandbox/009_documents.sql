-- Matter documents: folders, files (added in two steps: metadata, then the bytes PUT to a
-- pre-signed-style upload URL that expires) and memos.

CREATE TABLE sb_folders (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    matter_id uuid NOT NULL REFERENCES sb_matters (id) ON DELETE CASCADE,
    -- NULL: directly under the matter's root folder (whose id is null, as in Smokeball).
    parent_id uuid REFERENCES sb_folders (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 255 AND name !~ '[/\\]'),
    created_at timestamptz NOT NULL,
    visible_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX sb_folders_name_idx
    ON sb_folders (matter_id, coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));

CREATE TABLE sb_files (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    matter_id uuid NOT NULL REFERENCES sb_matters (id) ON DELETE CASCADE,
    folder_id uuid REFERENCES sb_folders (id) ON DELETE SET NULL,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    -- Only a digest of the upload URL's secret; the URL works until upload_expires_at, once.
    upload_token_sha256 bytea NOT NULL UNIQUE,
    upload_expires_at timestamptz NOT NULL,
    content bytea,
    size_bytes bigint NOT NULL DEFAULT 0,
    uploaded_at timestamptz,
    created_at timestamptz NOT NULL,
    visible_at timestamptz NOT NULL
);
CREATE INDEX sb_files_matter_idx ON sb_files (matter_id, created_at, id);

CREATE TABLE sb_memos (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    matter_id uuid NOT NULL REFERENCES sb_matters (id) ON DELETE CASCADE,
    title text NOT NULL,
    text text NOT NULL,
    created_at timestamptz NOT NULL,
    visible_at timestamptz NOT NULL
);

-- The request that added a file: its upload's files.updated event carries that RequestId.
ALTER TABLE sb_files ADD COLUMN client_id text, ADD COLUMN request_id text;
