-- Indexes for GET /matters filters beyond the (account_id, updated_at, id) paging index:
-- ContactId looks a contact up among clients and other sides (`@>` on the concatenated arrays),
-- MatterTypeId narrows by type within an account.
CREATE INDEX sb_matters_contacts_idx ON sb_matters USING gin ((client_ids || other_side_ids));
CREATE INDEX sb_matters_type_idx ON sb_matters (account_id, matter_type_id);
