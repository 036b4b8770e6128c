-- 037: importing existing Smokeball matters (issue #13, item 3).
--
-- Catch-all case types, one per practice area. A firm's Smokeball holds matters of types that
-- no CaseHug case type maps to (Illinois' "Allocation of Parental Responsibilities", a firm's own
-- "Divorce - Contested"), yet they belong to one of CaseHug's four practice areas by their
-- category. matters.case_type is NOT NULL and references case_types, so without a case type for
-- "the rest of the area" such a matter could only be skipped or mislabelled as a specific case
-- type. Forwards (a matter created in CaseHug with one of these) they map to the category's
-- general type, as any case type whose named type is missing does (docs/sync.md).
INSERT INTO case_types (key, practice_area, display_name, smokeball_category, smokeball_matter_type, sort_order)
VALUES
    ('family_law_other', 'family_law', 'Other Family Law', 'Family Law', 'General', 9),
    ('immigration_other', 'immigration', 'Other Immigration', 'Immigration', 'General', 19),
    ('personal_injury_other', 'personal_injury', 'Other Personal Injury', 'Personal Injury', 'General', 29),
    ('estate_planning_other', 'estate_planning', 'Other Estate Planning', 'Estate Planning', 'General', 39)
ON CONFLICT (key) DO NOTHING;

-- A client made by the import for a Smokeball contact is linked to it from birth: 'imported'.
ALTER TABLE clients DROP CONSTRAINT clients_smokeball_contact_linked_by_check;
ALTER TABLE clients ADD CONSTRAINT clients_smokeball_contact_linked_by_check CHECK (
    smokeball_contact_linked_by IN ('email', 'phone_last_name', 'created', 'external_system_id', 'imported'));
