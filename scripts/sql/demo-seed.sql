-- The demo firm that scripts/run and scripts/bench serve: one firm, a firm_admin and a
-- standard user, a few clients, matters across the four practice areas and some approved
-- documents. Fixed ids so .data/demo.env stays valid across restarts; idempotent, so running
-- it twice changes nothing. Run as the database owner (casehug-admin seed-demo), which
-- bypasses RLS; the app role never runs this. All names are fictional (no real PHI).

INSERT INTO firms (id, name) VALUES
    ('00000000-0000-4000-8000-000000000001', 'Demo Law Group')
ON CONFLICT (id) DO NOTHING;

INSERT INTO users (id, firm_id, email, full_name, role) VALUES
    ('00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-000000000001',
     'admin@demo-law.test', 'Dana Admin', 'firm_admin'),
    ('00000000-0000-4000-8000-0000000000b1', '00000000-0000-4000-8000-000000000001',
     'paralegal@demo-law.test', 'Sam Paralegal', 'standard')
ON CONFLICT (id) DO NOTHING;

INSERT INTO clients (id, firm_id, first_name, last_name, email, phone) VALUES
    ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-000000000001',
     'Avery', 'Example', 'avery.example@mail.test', '+1 555 010 0101'),
    ('00000000-0000-4000-8000-0000000000c2', '00000000-0000-4000-8000-000000000001',
     'Jordan', 'Sample', 'jordan.sample@mail.test', '+1 555 010 0102'),
    ('00000000-0000-4000-8000-0000000000c3', '00000000-0000-4000-8000-000000000001',
     'Riley', 'Placeholder', NULL, '+1 555 010 0103'),
    ('00000000-0000-4000-8000-0000000000c4', '00000000-0000-4000-8000-000000000001',
     'Morgan', 'Testcase', 'morgan.testcase@mail.test', NULL)
ON CONFLICT (id) DO NOTHING;

INSERT INTO matters (id, firm_id, client_id, title, case_number, case_type, status) VALUES
    ('00000000-0000-4000-8000-0000000000d1', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000c1', 'Example v. Example (divorce)', 'DLG-2026-0001',
     'divorce_standard', 'active'),
    ('00000000-0000-4000-8000-0000000000d2', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000c2', 'Sample asylum application', 'DLG-2026-0002',
     'asylum', 'active'),
    ('00000000-0000-4000-8000-0000000000d3', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000c3', 'Placeholder auto accident claim', 'DLG-2026-0003',
     'auto_accident', 'active'),
    ('00000000-0000-4000-8000-0000000000d4', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000c4', 'Testcase simple will', 'DLG-2025-0117',
     'simple_will', 'closed')
ON CONFLICT (id) DO NOTHING;

INSERT INTO uploads (id, firm_id, matter_id, status, file_name, storage_path, size_bytes, content_type)
VALUES
    ('00000000-0000-4000-8000-0000000000e1', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000d1', 'approved', 'marriage-certificate.pdf',
     'demo/d1/marriage-certificate.pdf', 184320, 'application/pdf'),
    ('00000000-0000-4000-8000-0000000000e2', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000d1', 'pending', 'financial-statement.xlsx',
     'demo/d1/financial-statement.xlsx', 40960,
     'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'),
    ('00000000-0000-4000-8000-0000000000e3', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000d2', 'approved', 'passport-scan.jpg',
     'demo/d2/passport-scan.jpg', 512000, 'image/jpeg'),
    ('00000000-0000-4000-8000-0000000000e4', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000d3', 'approved', 'police-report.pdf',
     'demo/d3/police-report.pdf', 256000, 'application/pdf'),
    ('00000000-0000-4000-8000-0000000000e5', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000d3', 'rejected', 'blurry-photo.png',
     'demo/d3/blurry-photo.png', 1024, 'image/png'),
    ('00000000-0000-4000-8000-0000000000e6', '00000000-0000-4000-8000-000000000001',
     '00000000-0000-4000-8000-0000000000d4', 'approved', 'signed-will.pdf',
     'demo/d4/signed-will.pdf', 98304, 'application/pdf')
ON CONFLICT (id) DO NOTHING;
