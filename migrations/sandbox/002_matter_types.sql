-- The Smokeball sandbox's read-only matter-type catalogue: US (CA, NY, TX, FL, IL), AU (NSW,
-- VIC, QLD) and UK (ENG, SCT). A realistic sample written for tests, not Smokeball's real
-- catalogue. Ids are md5-derived from region/location/category/name, so reruns insert nothing.

WITH us_locations (location) AS (
    VALUES ('CA'), ('NY'), ('TX'), ('FL'), ('IL')
),
-- Every (category, name) pair that case_types in 001_host_app.sql maps to is here.
us_types (category, name, options) AS (
    VALUES
    -- Family Law
    ('Family Law', 'Divorce', ARRAY['Petitioner', 'Respondent']),
    ('Family Law', 'Divorce - Contested', ARRAY['Petitioner', 'Respondent']),
    ('Family Law', 'Divorce - Uncontested', ARRAY['Petitioner', 'Respondent']),
    ('Family Law', 'Legal Separation', ARRAY['Petitioner', 'Respondent']),
    ('Family Law', 'Custody', ARRAY['Petitioner', 'Respondent']),
    ('Family Law', 'Child Support', ARRAY['Petitioner', 'Respondent']),
    ('Family Law', 'Spousal Support', ARRAY['Petitioner', 'Respondent']),
    ('Family Law', 'Adoption', ARRAY['Adoptive Parent', 'Petitioner']),
    ('Family Law', 'Prenuptial Agreement', ARRAY['Client', 'Other Party']),
    ('Family Law', 'Paternity', ARRAY['Petitioner', 'Respondent']),
    ('Family Law', 'Guardianship', ARRAY['Petitioner', 'Guardian', 'Ward']),
    ('Family Law', 'Domestic Violence Protective Order', ARRAY['Petitioner', 'Respondent']),
    -- Immigration
    ('Immigration', 'Family Based Petition', ARRAY['Applicant', 'Petitioner', 'Beneficiary']),
    ('Immigration', 'Employment Based Petition', ARRAY['Applicant', 'Petitioner', 'Beneficiary']),
    ('Immigration', 'Naturalization', ARRAY['Applicant']),
    ('Immigration', 'Adjustment of Status', ARRAY['Applicant', 'Petitioner', 'Beneficiary']),
    ('Immigration', 'Asylum', ARRAY['Applicant']),
    ('Immigration', 'Removal Defense', ARRAY['Respondent']),
    ('Immigration', 'DACA', ARRAY['Applicant']),
    ('Immigration', 'Visa Application', ARRAY['Applicant', 'Petitioner', 'Beneficiary']),
    ('Immigration', 'Consular Processing', ARRAY['Applicant', 'Petitioner', 'Beneficiary']),
    ('Immigration', 'Removal of Conditions', ARRAY['Applicant', 'Petitioner']),
    -- Personal Injury
    ('Personal Injury', 'Motor Vehicle Accident', ARRAY['Plaintiff', 'Defendant']),
    ('Personal Injury', 'Premises Liability', ARRAY['Plaintiff', 'Defendant']),
    ('Personal Injury', 'Medical Malpractice', ARRAY['Plaintiff', 'Defendant']),
    ('Personal Injury', 'Workers Compensation', ARRAY['Claimant', 'Employer']),
    ('Personal Injury', 'Wrongful Death', ARRAY['Plaintiff', 'Defendant']),
    ('Personal Injury', 'Product Liability', ARRAY['Plaintiff', 'Defendant']),
    ('Personal Injury', 'Dog Bite', ARRAY['Plaintiff', 'Defendant']),
    ('Personal Injury', 'Nursing Home Negligence', ARRAY['Plaintiff', 'Defendant']),
    ('Personal Injury', 'Pedestrian Accident', ARRAY['Plaintiff', 'Defendant']),
    -- Estate Planning
    ('Estate Planning', 'Will', ARRAY['Client']),
    ('Estate Planning', 'Trust', ARRAY['Client']),
    ('Estate Planning', 'Power of Attorney', ARRAY['Client']),
    ('Estate Planning', 'Advance Health Care Directive', ARRAY['Client']),
    ('Estate Planning', 'Probate', ARRAY['Executor', 'Administrator', 'Beneficiary']),
    ('Estate Planning', 'Estate Administration', ARRAY['Executor', 'Administrator', 'Beneficiary']),
    ('Estate Planning', 'Guardianship', ARRAY['Petitioner', 'Guardian', 'Ward']),
    ('Estate Planning', 'Trust Administration', ARRAY['Trustee', 'Beneficiary']),
    ('Estate Planning', 'Estate Plan - Couple', ARRAY['Client']),
    ('Estate Planning', 'Special Needs Trust', ARRAY['Client', 'Trustee']),
    -- Litigation
    ('Litigation', 'Civil Litigation', ARRAY['Plaintiff', 'Defendant']),
    ('Litigation', 'Breach of Contract', ARRAY['Plaintiff', 'Defendant']),
    ('Litigation', 'Debt Collection', ARRAY['Creditor', 'Debtor']),
    ('Litigation', 'Employment Dispute', ARRAY['Employee', 'Employer']),
    ('Litigation', 'Appeal', ARRAY['Appellant', 'Appellee']),
    -- Real Estate
    ('Real Estate', 'Residential Purchase', ARRAY['Buyer', 'Seller']),
    ('Real Estate', 'Residential Sale', ARRAY['Buyer', 'Seller']),
    ('Real Estate', 'Commercial Lease', ARRAY['Landlord', 'Tenant']),
    ('Real Estate', 'Landlord Tenant Dispute', ARRAY['Landlord', 'Tenant']),
    -- Criminal
    ('Criminal', 'DUI / DWI', ARRAY['Defendant']),
    ('Criminal', 'Misdemeanor', ARRAY['Defendant']),
    ('Criminal', 'Felony', ARRAY['Defendant']),
    ('Criminal', 'Expungement', ARRAY['Petitioner']),
    -- Bankruptcy
    ('Bankruptcy', 'Chapter 7', ARRAY['Debtor', 'Creditor']),
    ('Bankruptcy', 'Chapter 13', ARRAY['Debtor', 'Creditor'])
),
au_locations (location) AS (
    VALUES ('NSW'), ('VIC'), ('QLD')
),
au_types (category, name, options) AS (
    VALUES
    ('Family Law', 'Divorce', ARRAY['Applicant', 'Respondent']),
    ('Family Law', 'Property Settlement', ARRAY['Applicant', 'Respondent']),
    ('Family Law', 'Parenting Orders', ARRAY['Applicant', 'Respondent']),
    ('Family Law', 'Consent Orders', ARRAY['Applicant', 'Respondent']),
    ('Family Law', 'Binding Financial Agreement', ARRAY['Client', 'Other Party']),
    ('Conveyancing', 'Purchase', ARRAY['Purchaser', 'Vendor']),
    ('Conveyancing', 'Sale', ARRAY['Purchaser', 'Vendor']),
    ('Conveyancing', 'Transfer', ARRAY['Transferor', 'Transferee']),
    ('Conveyancing', 'Off the Plan Purchase', ARRAY['Purchaser', 'Vendor']),
    ('Wills & Estates', 'Probate', ARRAY['Executor', 'Administrator', 'Beneficiary']),
    ('Wills & Estates', 'Letters of Administration', ARRAY['Administrator', 'Beneficiary']),
    ('Wills & Estates', 'Will', ARRAY['Client']),
    ('Wills & Estates', 'Enduring Power of Attorney', ARRAY['Client']),
    ('Wills & Estates', 'Family Provision Claim', ARRAY['Plaintiff', 'Defendant']),
    ('Personal Injury', 'Motor Vehicle Accident', ARRAY['Plaintiff', 'Defendant']),
    ('Personal Injury', 'Workers Compensation', ARRAY['Worker', 'Employer']),
    ('Personal Injury', 'Public Liability', ARRAY['Plaintiff', 'Defendant']),
    ('Commercial', 'Debt Recovery', ARRAY['Creditor', 'Debtor']),
    ('Immigration', 'Partner Visa', ARRAY['Applicant', 'Sponsor'])
),
uk_locations (location) AS (
    VALUES ('ENG'), ('SCT')
),
uk_types (category, name, options) AS (
    VALUES
    ('Family', 'Divorce', ARRAY['Applicant', 'Respondent']),
    ('Family', 'Financial Remedy', ARRAY['Applicant', 'Respondent']),
    ('Family', 'Child Arrangements', ARRAY['Applicant', 'Respondent']),
    ('Family', 'Cohabitation Agreement', ARRAY['Client', 'Other Party']),
    ('Private Client', 'Wills', ARRAY['Testator']),
    ('Private Client', 'Trusts', ARRAY['Settlor', 'Trustee', 'Beneficiary']),
    ('Residential Property', 'Purchase', ARRAY['Buyer', 'Seller']),
    ('Residential Property', 'Sale', ARRAY['Buyer', 'Seller']),
    ('Residential Property', 'Remortgage', ARRAY['Borrower', 'Lender']),
    ('Personal Injury', 'Road Traffic Accident', ARRAY['Claimant', 'Defendant']),
    ('Personal Injury', 'Employer''s Liability', ARRAY['Claimant', 'Defendant']),
    ('Dispute Resolution', 'Debt Recovery', ARRAY['Claimant', 'Defendant']),
    ('Employment', 'Employment Tribunal Claim', ARRAY['Claimant', 'Respondent'])
),
-- Rows that exist in one location only: local variants, lead types, retired types.
extra (region, location, category, name, type, options, is_deleted) AS (
    VALUES
    -- State-specific procedures
    ('US', 'CA', 'Estate Planning', 'Conservatorship', 0, ARRAY['Petitioner', 'Conservator', 'Conservatee'], false),
    ('US', 'CA', 'Family Law', 'Domestic Partnership Dissolution', 0, ARRAY['Petitioner', 'Respondent'], false),
    ('US', 'NY', 'Estate Planning', 'Article 81 Guardianship', 0, ARRAY['Petitioner', 'Guardian', 'Incapacitated Person'], false),
    ('US', 'NY', 'Personal Injury', 'No-Fault Claim', 0, ARRAY['Claimant', 'Insurer'], false),
    ('US', 'TX', 'Estate Planning', 'Muniment of Title', 0, ARRAY['Applicant', 'Beneficiary'], false),
    ('US', 'TX', 'Family Law', 'Suit Affecting the Parent-Child Relationship', 0, ARRAY['Petitioner', 'Respondent'], false),
    ('US', 'FL', 'Estate Planning', 'Summary Administration', 0, ARRAY['Petitioner', 'Beneficiary'], false),
    ('US', 'FL', 'Real Estate', 'Foreclosure Defense', 0, ARRAY['Borrower', 'Lender'], false),
    ('US', 'IL', 'Estate Planning', 'Small Estate Affidavit', 0, ARRAY['Affiant', 'Beneficiary'], false),
    ('US', 'IL', 'Family Law', 'Allocation of Parental Responsibilities', 0, ARRAY['Petitioner', 'Respondent'], false),
    -- Scotland and England differ on estates and powers of attorney
    ('UK', 'ENG', 'Private Client', 'Probate', 0, ARRAY['Executor', 'Administrator', 'Beneficiary'], false),
    ('UK', 'ENG', 'Private Client', 'Lasting Power of Attorney', 0, ARRAY['Donor', 'Attorney'], false),
    ('UK', 'SCT', 'Private Client', 'Executry', 0, ARRAY['Executor', 'Beneficiary'], false),
    ('UK', 'SCT', 'Private Client', 'Power of Attorney', 0, ARRAY['Granter', 'Attorney'], false),
    -- Lead types (TypeCategory 1)
    ('US', 'CA', 'Personal Injury', 'Lead - Personal Injury', 1, ARRAY['Plaintiff', 'Defendant'], false),
    ('US', 'NY', 'Personal Injury', 'Lead - Personal Injury', 1, ARRAY['Plaintiff', 'Defendant'], false),
    ('US', 'CA', 'Family Law', 'Lead - Family Law', 1, ARRAY['Petitioner', 'Respondent'], false),
    ('US', 'TX', 'Immigration', 'Lead - Immigration', 1, ARRAY['Applicant', 'Petitioner', 'Beneficiary'], false),
    ('AU', 'NSW', 'Conveyancing', 'Lead - Conveyancing', 1, ARRAY['Purchaser', 'Vendor'], false),
    -- Retired types: kept in the catalogue, hidden from listings
    ('US', 'CA', 'Family Law', 'Dissolution (Legacy)', 0, ARRAY['Petitioner', 'Respondent'], true),
    ('US', 'TX', 'Personal Injury', 'Auto Accident (Legacy)', 0, ARRAY['Plaintiff', 'Defendant'], true),
    ('AU', 'VIC', 'Conveyancing', 'Purchase (Old Form)', 0, ARRAY['Purchaser', 'Vendor'], true)
),
seed (region, location, category, name, type, options, is_deleted) AS (
    SELECT 'US', l.location, t.category, t.name, 0, t.options, false
    FROM us_locations l CROSS JOIN us_types t
    UNION ALL
    SELECT 'AU', l.location, t.category, t.name, 0, t.options, false
    FROM au_locations l CROSS JOIN au_types t
    UNION ALL
    SELECT 'UK', l.location, t.category, t.name, 0, t.options, false
    FROM uk_locations l CROSS JOIN uk_types t
    UNION ALL
    SELECT region, location, category, name, type, options, is_deleted
    FROM extra
)
INSERT INTO sb_matter_types (id, version_id, name, category, location, region, type, representative_options, is_deleted)
SELECT
    md5('mt:' || region || ':' || location || ':' || category || ':' || name)::uuid,
    md5('mtv:' || region || ':' || location || ':' || category || ':' || name)::uuid,
    name, category, location, region, type, options, is_deleted
FROM seed
ON CONFLICT (id) DO NOTHING;
