-- General matter types (issue #12) and each firm account's state. Smokeball publishes no
-- catalogue of "general" types; a firm's catalogue may hold one per category, named in one of
-- the forms CaseHug falls back to (docs/sync.md, "Matter types"): "General",
-- "General <Category>", "<Category> - General" or the category's own name. This is a realistic
-- sample, not Smokeball's: some categories in some US locations have one (Illinois Family Law
-- has two, to show which wins), Florida has none, and a lead type named "General" (which is
-- never a matter's type) sits beside Texas Immigration's. Ids are md5-derived as in 002, so
-- reruns insert nothing.
WITH general (location, category, name, type, options) AS (
    VALUES
    ('CA', 'Family Law', 'Family Law - General', 0, ARRAY['Petitioner', 'Respondent']),
    ('CA', 'Personal Injury', 'General Personal Injury', 0, ARRAY['Plaintiff', 'Defendant']),
    ('CA', 'Estate Planning', 'General', 0, ARRAY['Client']),
    ('NY', 'Family Law', 'General', 0, ARRAY['Petitioner', 'Respondent']),
    ('NY', 'Immigration', 'Immigration', 0, ARRAY['Applicant', 'Petitioner', 'Beneficiary']),
    ('TX', 'Litigation', 'General Litigation', 0, ARRAY['Plaintiff', 'Defendant']),
    ('TX', 'Immigration', 'General', 1, ARRAY['Applicant']),
    ('IL', 'Family Law', 'General', 0, ARRAY['Client', 'Petitioner', 'Respondent']),
    ('IL', 'Family Law', 'Family Law', 0, ARRAY['Petitioner', 'Respondent']),
    ('IL', 'Estate Planning', 'Estate Planning - General', 0, ARRAY['Client'])
)
INSERT INTO sb_matter_types (id, version_id, name, category, location, region, type, representative_options, is_deleted)
SELECT
    md5('mt:US:' || location || ':' || category || ':' || name)::uuid,
    md5('mtv:US:' || location || ':' || category || ':' || name)::uuid,
    name, category, location, 'US', type, options, false
FROM general
ON CONFLICT (id) DO NOTHING;

-- The firm's state, as `GET /firm` answers it in `streetAddress.state`: where its matter types
-- come from. `POST /_sandbox/accounts` takes `state`; without one a region's account is in IL,
-- NSW or ENG.
ALTER TABLE sb_accounts ADD COLUMN state text CHECK (state ~ '^[A-Z]{2,3}$');
