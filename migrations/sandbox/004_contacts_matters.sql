-- Contacts and matters of each firm account. `doc` holds the resource as the API returns it
-- (Smokeball's field names); the other columns are what filters, search and paging need.
-- `visible_at`: a write answered 202 becomes readable only then (eventual consistency).

CREATE TABLE sb_contacts (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    version_id uuid NOT NULL,
    type text NOT NULL CHECK (type IN ('Person', 'Organisation', 'Staff', 'GroupOfPeople', 'Trust')),
    name text NOT NULL,
    email text,
    phone text,
    external_system_id text,
    is_deleted boolean NOT NULL DEFAULT false,
    doc jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    visible_at timestamptz NOT NULL
);
CREATE INDEX sb_contacts_account_idx ON sb_contacts (account_id, updated_at, id);

CREATE TABLE sb_matters (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES sb_accounts (id) ON DELETE CASCADE,
    version_id uuid NOT NULL,
    number text,
    matter_type_id uuid NOT NULL REFERENCES sb_matter_types (id),
    client_ids uuid[] NOT NULL DEFAULT '{}',
    other_side_ids uuid[] NOT NULL DEFAULT '{}',
    status text NOT NULL CHECK (status IN ('Open', 'Pending', 'Closed', 'Deleted', 'Cancelled')),
    is_lead boolean NOT NULL DEFAULT false,
    description text,
    external_system_id text,
    doc jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    visible_at timestamptz NOT NULL
);
CREATE INDEX sb_matters_account_idx ON sb_matters (account_id, updated_at, id);
