import Cryptography
import Foundation
import PostgreSQL
import Testing

/// Proves tenant isolation at the database: connected as the role the routes use, firm A can
/// neither see nor change firm B's rows in any firm-scoped table, whatever the query.
@Suite struct RowLevelSecurityTests {
    /// Every firm-scoped table, the column holding the firm, and a column safe to self-assign.
    static let tables: [(table: String, firmColumn: String, touch: String)] = [
        ("firms", "id", "name"),
        ("users", "firm_id", "full_name"),
        ("clients", "firm_id", "first_name"),
        ("matters", "firm_id", "title"),
        ("uploads", "firm_id", "file_name"),
        ("firm_integrations", "firm_id", "region"),
        ("oauth_states", "firm_id", "redirect_after"),
        ("smokeball_webhook_events", "firm_id", "event_type"),
        ("integration_sync_logs", "firm_id", "action"),
        ("jobs", "firm_id", "kind"),
    ]

    struct TwoFirms {
        let firmA: UUID
        let firmB: UUID
        let userA: UUID
        let userB: UUID
    }

    /// Fills every table with rows for two firms.
    static func seedTwoFirms(_ database: ServiceDatabase) throws -> TwoFirms {
        let seed = try Seed(database)
        let firmA = try seed.firm("A")
        let firmB = try seed.firm("B")
        let userA = try seed.user(firm: firmA, role: "firm_admin")
        let userB = try seed.user(firm: firmB, role: "firm_admin")
        for (firm, user) in [(firmA, userA), (firmB, userB)] {
            let matter = try seed.matter(firm: firm)
            try seed.asFirm(firm) { connection in
                let client = try connection.execute(
                    "INSERT INTO clients (firm_id, first_name, last_name, email) VALUES ($1, 'Jo', 'Doe', 'jo@x.test') RETURNING id",
                    [firm]
                ).single().uuid("id")
                try connection.execute("UPDATE matters SET client_id = $1 WHERE id = $2", [client, matter])
                let upload = try connection.execute(
                    """
                    INSERT INTO uploads (firm_id, matter_id, status, file_name, storage_path, size_bytes, content_type)
                    VALUES ($1, $2, 'approved', 'id.pdf', 'firm/id.pdf', 10, 'application/pdf') RETURNING id
                    """, [firm, matter]
                ).single().uuid("id")
                let integration = try connection.execute(
                    "INSERT INTO firm_integrations (firm_id, platform, is_active) VALUES ($1, 'smokeball', true) RETURNING id",
                    [firm]
                ).single().uuid("id")
                try connection.execute(
                    """
                    INSERT INTO oauth_states (firm_id, user_id, state_hash, code_verifier)
                    VALUES ($1, $2, $3, '\\x00'::bytea)
                    """, [firm, user, SecureRandom.bytes(32)])
                try connection.execute(
                    """
                    INSERT INTO smokeball_webhook_events (firm_id, event_type, payload, dedupe_key)
                    VALUES ($1, 'matter.updated', '{}', $2)
                    """, [firm, UUID().uuidString])
                try connection.execute(
                    """
                    INSERT INTO integration_sync_logs (firm_id, integration_id, matter_id, upload_id, action, status)
                    VALUES ($1, $2, $3, $4, 'sync_matter', 'success')
                    """, [firm, integration, matter, upload])
                try connection.execute("SELECT app_enqueue_job('sync_matter', $1)", [matter.uuidString])
            }
        }
        return TwoFirms(firmA: firmA, firmB: firmB, userA: userA, userB: userB)
    }

    @Test func theAppRoleCannotBypassRowLevelSecurity() throws {
        try ServiceDatabase.with { database in
            let app = try Connection(url: database.appURL)
            let role = try app.execute(
                "SELECT rolsuper, rolbypassrls, current_user::text AS me FROM pg_roles WHERE rolname = current_user"
            ).single()
            #expect(try role.string("me") == "casehug_app")
            #expect(try role.bool("rolsuper") == false)
            #expect(try role.bool("rolbypassrls") == false)
            for entry in Self.tables {
                let table = try app.execute(
                    """
                    SELECT c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
                           pg_get_userbyid(c.relowner)::text AS owner
                    FROM pg_class c WHERE c.oid = to_regclass($1)
                    """, [entry.table]
                ).single()
                #expect(try table.bool("enabled"), "RLS off on \(entry.table)")
                #expect(try table.bool("forced"), "RLS not forced on \(entry.table)")
                #expect(try table.string("owner") != "casehug_app")
            }
        }
    }

    @Test func withoutATenantNothingIsVisible() throws {
        try ServiceDatabase.with { database in
            _ = try Self.seedTwoFirms(database)
            let app = try Connection(url: database.appURL)
            for entry in Self.tables {
                let count = try app.execute("SELECT count(*) AS n FROM \(entry.table)").single().int("n")
                #expect(count == 0, "\(entry.table) leaked \(count) rows without a tenant")
            }
        }
    }

    @Test(arguments: Self.tables.map(\.table))
    func firmACannotReadOrWriteFirmBRows(table: String) throws {
        let entry = try #require(Self.tables.first { $0.table == table })
        try ServiceDatabase.with { database in
            let firms = try Self.seedTwoFirms(database)
            let app = try Connection(url: database.appURL)
            // Table and column names come from the fixed list above; values are parameters.
            let firmColumn = entry.firmColumn
            try app.transaction { connection in
                try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firms.userA])
                let visible = try connection.execute(
                    "SELECT count(*) FILTER (WHERE \(firmColumn) = $1) AS other, count(*) AS total FROM \(table)",
                    [firms.firmB]
                ).single()
                #expect(try visible.int("other") == 0)
                #expect(try visible.int("total") >= 1, "firm A should see its own \(table)")
            }
            // Updating B's rows affects nothing, or is refused outright where UPDATE is not granted.
            do {
                try app.transaction { connection in
                    try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firms.userA])
                    let updated = try connection.execute(
                        "UPDATE \(table) SET \(entry.touch) = \(entry.touch) WHERE \(firmColumn) = $1",
                        [firms.firmB])
                    #expect(updated.affectedRows == 0)
                }
            } catch let error as DatabaseError {
                #expect(error.isInsufficientPrivilege)
            }
            // Deleting B's rows affects nothing (or is refused outright where DELETE is not granted).
            do {
                try app.transaction { connection in
                    try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firms.userA])
                    let deleted = try connection.execute(
                        "DELETE FROM \(table) WHERE \(firmColumn) = $1", [firms.firmB])
                    #expect(deleted.affectedRows == 0)
                    throw Rollback()
                }
            } catch let error as DatabaseError {
                #expect(error.isInsufficientPrivilege)
            } catch is Rollback {}
            // Moving an own row into firm B is refused by the policy's WITH CHECK.
            do {
                try app.transaction { connection in
                    try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firms.userA])
                    try connection.execute("UPDATE \(table) SET \(firmColumn) = $1", [firms.firmB])
                }
                Issue.record("moved a \(table) row into another firm")
            } catch let error as DatabaseError {
                #expect(error.isInsufficientPrivilege || error.sqlState == "23503")
            }
            // B's rows are all still there, unchanged in number.
            let admin = try database.admin()
            let remaining = try admin.execute(
                "SELECT count(*) AS n FROM \(table) WHERE \(firmColumn) = $1", [firms.firmB]
            ).single().int("n")
            #expect(remaining >= 1)
        }
    }

    @Test func insertingIntoAnotherFirmIsRefused() throws {
        try ServiceDatabase.with { database in
            let firms = try Self.seedTwoFirms(database)
            let app = try Connection(url: database.appURL)
            let attempts: [(String, [any SQLValueConvertible])] = [
                ("INSERT INTO clients (firm_id, first_name, last_name) VALUES ($1, 'X', 'Y')", [firms.firmB]),
                (
                    "INSERT INTO firm_integrations (firm_id, platform) VALUES ($1, 'other_platform')",
                    [firms.firmB]
                ),
                (
                    "INSERT INTO integration_sync_logs (firm_id, action, status) VALUES ($1, 'x', 'success')",
                    [firms.firmB]
                ),
                (
                    "INSERT INTO smokeball_webhook_events (firm_id, event_type, payload, dedupe_key) VALUES ($1, 'x', '{}', 'k')",
                    [firms.firmB]
                ),
            ]
            for (sql, values) in attempts {
                do {
                    try app.transaction { connection in
                        try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firms.userA])
                        try connection.execute(sql, values)
                    }
                    Issue.record("cross-firm insert succeeded: \(sql)")
                } catch let error as DatabaseError {
                    #expect(error.isInsufficientPrivilege)
                }
            }
        }
    }

    @Test func tenantSettingsDoNotOutliveTheTransaction() throws {
        try ServiceDatabase.with { database in
            let firms = try Self.seedTwoFirms(database)
            let app = try Connection(url: database.appURL)
            try app.transaction { connection in
                try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firms.userA])
            }
            let count = try app.execute("SELECT count(*) AS n FROM matters").single().int("n")
            #expect(count == 0)
        }
    }

    struct Rollback: Error {}
}
