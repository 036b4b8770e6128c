-- 001: the slice of the CaseHug host application this integration reads and writes.
-- Firms own everything; every firm-scoped table has row-level security keyed on the firm id
-- that the request's transaction sets with set_config('app.firm_id', ..., true).

CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- The role route processes connect as: not the owner, not a superuser, no BYPASSRLS, so every
-- row it touches passes the policies below. Scripts give it LOGIN and a password.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'casehug_app') THEN
        CREATE ROLE casehug_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO casehug_app;

-- The tenant of the current transaction; NULL (so every policy fails closed) when unset.
CREATE FUNCTION app_current_firm() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.firm_id', true), '')::uuid $$;

CREATE FUNCTION app_current_user() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$;

CREATE TABLE firms (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL until the user joins or creates a firm; such users get 403 from every route.
    firm_id uuid REFERENCES firms (id) ON DELETE SET NULL,
    email text NOT NULL UNIQUE,
    full_name text,
    role text NOT NULL DEFAULT 'standard' CHECK (role IN ('firm_admin', 'standard')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_firm_id_idx ON users (firm_id);

-- The catalogue of CaseHug case types (not firm-scoped). The Smokeball columns are the default
-- mapping to Smokeball's matter types by name within a practice-area category; firms override
-- it per case type in firm_integrations.settings.case_type_mappings.
CREATE TABLE case_types (
    key text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]{1,63}$'),
    practice_area text NOT NULL CHECK (
        practice_area IN ('family_law', 'immigration', 'personal_injury', 'estate_planning')
    ),
    display_name text NOT NULL,
    smokeball_category text NOT NULL,
    smokeball_matter_type text NOT NULL,
    sort_order integer NOT NULL
);

INSERT INTO case_types (key, practice_area, display_name, smokeball_category, smokeball_matter_type, sort_order)
VALUES
    ('divorce_standard', 'family_law', 'Divorce', 'Family Law', 'Divorce', 1),
    ('child_custody', 'family_law', 'Child Custody', 'Family Law', 'Custody', 2),
    ('child_support', 'family_law', 'Child Support', 'Family Law', 'Child Support', 3),
    ('adoption', 'family_law', 'Adoption', 'Family Law', 'Adoption', 4),
    ('prenuptial_agreement', 'family_law', 'Prenuptial Agreement', 'Family Law', 'Prenuptial Agreement', 5),
    ('family_visa', 'immigration', 'Family-Based Visa', 'Immigration', 'Family Based Petition', 10),
    ('employment_visa', 'immigration', 'Employment-Based Visa', 'Immigration', 'Employment Based Petition', 11),
    ('naturalization', 'immigration', 'Naturalization', 'Immigration', 'Naturalization', 12),
    ('green_card', 'immigration', 'Green Card (Adjustment of Status)', 'Immigration', 'Adjustment of Status', 13),
    ('asylum', 'immigration', 'Asylum', 'Immigration', 'Asylum', 14),
    ('deportation_defense', 'immigration', 'Deportation Defense', 'Immigration', 'Removal Defense', 15),
    ('daca_renewal', 'immigration', 'DACA Renewal', 'Immigration', 'DACA', 16),
    ('auto_accident', 'personal_injury', 'Auto Accident', 'Personal Injury', 'Motor Vehicle Accident', 20),
    ('truck_accident', 'personal_injury', 'Truck Accident', 'Personal Injury', 'Motor Vehicle Accident', 21),
    ('motorcycle_accident', 'personal_injury', 'Motorcycle Accident', 'Personal Injury', 'Motor Vehicle Accident', 22),
    ('slip_and_fall', 'personal_injury', 'Slip and Fall', 'Personal Injury', 'Premises Liability', 23),
    ('medical_malpractice', 'personal_injury', 'Medical Malpractice', 'Personal Injury', 'Medical Malpractice', 24),
    ('workers_compensation', 'personal_injury', 'Workers'' Compensation', 'Personal Injury', 'Workers Compensation', 25),
    ('wrongful_death', 'personal_injury', 'Wrongful Death', 'Personal Injury', 'Wrongful Death', 26),
    ('product_liability', 'personal_injury', 'Product Liability', 'Personal Injury', 'Product Liability', 27),
    ('dog_bite', 'personal_injury', 'Dog Bite', 'Personal Injury', 'Dog Bite', 28),
    ('nursing_home_abuse', 'personal_injury', 'Nursing Home Abuse', 'Personal Injury', 'Nursing Home Negligence', 29),
    ('simple_will', 'estate_planning', 'Simple Will', 'Estate Planning', 'Will', 30),
    ('living_trust', 'estate_planning', 'Living Trust', 'Estate Planning', 'Trust', 31),
    ('power_of_attorney', 'estate_planning', 'Power of Attorney', 'Estate Planning', 'Power of Attorney', 32),
    ('healthcare_directive', 'estate_planning', 'Healthcare Directive', 'Estate Planning', 'Advance Health Care Directive', 33),
    ('probate', 'estate_planning', 'Probate', 'Estate Planning', 'Probate', 34),
    ('estate_administration', 'estate_planning', 'Estate Administration', 'Estate Planning', 'Estate Administration', 35),
    ('guardianship', 'estate_planning', 'Guardianship', 'Estate Planning', 'Guardianship', 36),
    ('trust_administration', 'estate_planning', 'Trust Administration', 'Estate Planning', 'Trust Administration', 37);

CREATE TABLE clients (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    first_name text NOT NULL,
    last_name text NOT NULL,
    email text,
    phone text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clients_firm_id_idx ON clients (firm_id);

CREATE TABLE matters (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    client_id uuid REFERENCES clients (id) ON DELETE SET NULL,
    title text NOT NULL,
    case_number text,
    case_type text NOT NULL REFERENCES case_types (key),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX matters_firm_id_idx ON matters (firm_id);

CREATE TABLE uploads (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    firm_id uuid NOT NULL REFERENCES firms (id) ON DELETE CASCADE,
    matter_id uuid NOT NULL REFERENCES matters (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    file_name text NOT NULL,
    storage_path text NOT NULL,
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    content_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_matter_id_idx ON uploads (matter_id);
CREATE INDEX uploads_firm_status_idx ON uploads (firm_id, status);

-- Row-level security. FORCE makes the policies apply to the table owner too. It does not make a
-- superuser or a BYPASSRLS role obey them: those skip row-level security whatever the table
-- says. Tenancy fails closed because of 025 (tables owned by the NOBYPASSRLS casehug_owner) and
-- because every process refuses to run as such a role.
ALTER TABLE firms ENABLE ROW LEVEL SECURITY;
ALTER TABLE firms FORCE ROW LEVEL SECURITY;
CREATE POLICY firms_tenant ON firms USING (id = app_current_firm()) WITH CHECK (id = app_current_firm());

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY users_tenant_read ON users FOR SELECT
    USING (firm_id = app_current_firm() OR id = app_current_user());
CREATE POLICY users_tenant_write ON users FOR UPDATE
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());

ALTER TABLE clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE clients FORCE ROW LEVEL SECURITY;
CREATE POLICY clients_tenant ON clients
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());

ALTER TABLE matters ENABLE ROW LEVEL SECURITY;
ALTER TABLE matters FORCE ROW LEVEL SECURITY;
CREATE POLICY matters_tenant ON matters
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());

ALTER TABLE uploads ENABLE ROW LEVEL SECURITY;
ALTER TABLE uploads FORCE ROW LEVEL SECURITY;
CREATE POLICY uploads_tenant ON uploads
    USING (firm_id = app_current_firm()) WITH CHECK (firm_id = app_current_firm());

-- Request authentication: given the verified JWT subject, set the transaction's user and firm
-- and return the user's firm and role. SECURITY DEFINER because the users policy needs the
-- tenant that this function establishes; it reads exactly one row by primary key. (025 replaces
-- it: owned by casehug_owner it no longer bypasses the policies.)
CREATE FUNCTION app_authenticate(p_user_id uuid)
    RETURNS TABLE (firm_id uuid, role text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    found_firm uuid;
    found_role text;
BEGIN
    SELECT u.firm_id, u.role INTO found_firm, found_role FROM public.users u WHERE u.id = p_user_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM set_config('app.user_id', p_user_id::text, true);
    PERFORM set_config('app.firm_id', coalesce(found_firm::text, ''), true);
    firm_id := found_firm;
    role := found_role;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION app_authenticate(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_authenticate(uuid) TO casehug_app;

GRANT SELECT ON case_types TO casehug_app;
GRANT SELECT ON firms TO casehug_app;
GRANT SELECT, UPDATE ON users TO casehug_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON clients, matters, uploads TO casehug_app;
