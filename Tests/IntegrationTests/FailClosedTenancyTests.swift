import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// Tenancy must not depend on which role a process happens to connect as: the tables belong to a
/// role that obeys row-level security, rows cannot point into another firm, the app role holds
/// only the rights it uses, and queries name the firm even where a policy already does.
@Suite struct FailClosedTenancyTests {
    static let firmScopedTables = [
        "firms", "users", "clients", "matters", "uploads", "firm_integrations", "oauth_states",
        "smokeball_webhook_events", "integration_sync_logs",
    ]

    @Test func theTablesAndTheTenantFunctionBelongToARoleThatObeysRowLevelSecurity() throws {
        try ServiceDatabase.with { database in
            let admin = try database.admin()
            let owner = try admin.execute(
                "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'casehug_owner'"
            ).single()
            #expect(try owner.bool("rolsuper") == false)
            #expect(try owner.bool("rolbypassrls") == false)
            #expect(try owner.bool("rolcanlogin") == false)
            for table in Self.firmScopedTables + ["case_types"] {
                let row = try admin.execute(
                    "SELECT pg_get_userbyid(relowner)::text AS owner FROM pg_class WHERE oid = to_regclass($1)", [table]
                ).single()
                #expect(try row.string("owner") == "casehug_owner", "\(table)")
            }
            let function = try admin.execute(
                """
                SELECT pg_get_userbyid(proowner)::text AS owner, prosecdef
                FROM pg_proc WHERE oid = 'app_authenticate(uuid)'::regprocedure
                """
            ).single()
            #expect(try function.string("owner") == "casehug_owner")
            #expect(try function.bool("prosecdef"))
            #expect(try SchemaOwnership.audit(admin, owner: "casehug_owner").isEmpty)
        }
    }

    @Test func theOwnerItselfSeesNoFirmRowsWithoutATenant() throws {
        try ServiceDatabase.with { database in
            _ = try RowLevelSecurityTests.seedTwoFirms(database)
            let admin = try database.admin()
            try admin.transaction { connection in
                try connection.execute("SET LOCAL ROLE casehug_owner")
                for table in Self.firmScopedTables {
                    let count = try connection.execute("SELECT count(*) AS n FROM \(table)").single().int("n")
                    #expect(count == 0, "the owner saw \(count) rows of \(table) without a tenant")
                }
            }
        }
    }

    @Test func authenticationStillFindsTheUserAndSetsOnlyTheirFirm() throws {
        try ServiceDatabase.with { database in
            let firms = try RowLevelSecurityTests.seedTwoFirms(database)
            let app = try Connection(url: database.appURL)
            try app.transaction { connection in
                let row = try connection.execute("SELECT firm_id, role FROM app_authenticate($1::uuid)", [firms.userA])
                    .single()
                #expect(try row.uuid("firm_id") == firms.firmA)
                let names = try connection.execute("SELECT name FROM firms").rows.map { try $0.string("name") }
                #expect(names == ["A"])
            }
            // An unknown user sets neither setting: nothing is visible afterwards in the same transaction.
            try app.transaction { connection in
                let found = try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [UUID()])
                #expect(found.rowCount == 0)
                let settings = try connection.execute(
                    "SELECT app_current_firm() AS firm, app_current_user() AS uid"
                ).single()
                #expect(try settings.optionalUUID("firm") == nil)
                #expect(try settings.optionalUUID("uid") == nil)
                #expect(try connection.execute("SELECT count(*) AS n FROM users").single().int("n") == 0)
            }
        }
    }

    /// Each statement is run by firm A's user and points at one of firm B's rows (`$1`, the
    /// named kind of row).
    static let crossFirmReferences: [(kind: String, sql: String)] = [
        ("client", "UPDATE matters SET client_id = $1 WHERE firm_id = app_current_firm()"),
        (
            "matter",
            """
            INSERT INTO uploads (firm_id, matter_id, file_name, storage_path, size_bytes, content_type)
            VALUES (app_current_firm(), $1, 'x.pdf', 'x', 1, 'application/pdf')
            """
        ),
        (
            "matter",
            "INSERT INTO integration_sync_logs (firm_id, matter_id, action, status) VALUES (app_current_firm(), $1, 'sync_matter', 'success')"
        ),
        (
            "upload",
            "INSERT INTO integration_sync_logs (firm_id, upload_id, action, status) VALUES (app_current_firm(), $1, 'sync_document', 'success')"
        ),
        (
            "integration",
            "INSERT INTO integration_sync_logs (firm_id, integration_id, action, status) VALUES (app_current_firm(), $1, 'connect', 'success')"
        ),
    ]

    @Test(arguments: 0..<Self.crossFirmReferences.count)
    func aRowCannotReferenceAnotherFirmsRow(index: Int) throws {
        let (kind, sql) = Self.crossFirmReferences[index]
        try ServiceDatabase.with { database in
            let firms = try RowLevelSecurityTests.seedTwoFirms(database)
            let seed = try Seed(database)
            func row(of firm: UUID) throws -> UUID {
                // The kind names one of four fixed tables; the firm is a parameter.
                let table = kind == "integration" ? "firm_integrations" : kind + "s"
                return try seed.asFirm(firm) { connection in
                    try connection.execute("SELECT id FROM \(table) WHERE firm_id = $1 LIMIT 1", [firm]).single().uuid(
                        "id")
                }
            }
            let before = try Self.rowCounts(seed)
            let app = try Connection(url: database.appURL)
            let error = #expect(throws: DatabaseError.self) {
                try app.transaction { connection in
                    try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firms.userA])
                    try connection.execute(sql, [try row(of: firms.firmB)])
                }
            }
            #expect(error?.sqlState == "23503", "expected a foreign-key violation, got \(String(describing: error))")
            #expect(try Self.rowCounts(seed) == before)
            // The same statement with firm A's own row is accepted: only the crossing is refused.
            try app.transaction { connection in
                try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firms.userA])
                #expect(try connection.execute(sql, [try row(of: firms.firmA)]).affectedRows >= 1)
            }
        }
    }

    static func rowCounts(_ seed: Seed) throws -> [Int64] {
        let row = try seed.connection.execute(
            """
            SELECT (SELECT count(*) FROM uploads) AS uploads, (SELECT count(*) FROM integration_sync_logs) AS logs,
                   (SELECT count(*) FROM matters WHERE client_id IS NOT NULL) AS linked
            """
        ).single()
        return [try row.int("uploads"), try row.int("logs"), try row.int("linked")]
    }

    @Test func deletingAReferencedRowClearsOnlyTheReferenceAndKeepsTheFirm() throws {
        try ServiceDatabase.with { database in
            let firms = try RowLevelSecurityTests.seedTwoFirms(database)
            let seed = try Seed(database)
            try seed.asFirm(firms.firmA) { connection in
                try connection.execute("DELETE FROM clients WHERE firm_id = $1", [firms.firmA])
                let matter = try connection.execute(
                    "SELECT firm_id, client_id FROM matters WHERE firm_id = $1", [firms.firmA]
                ).single()
                #expect(try matter.uuid("firm_id") == firms.firmA)
                #expect(try matter.optionalUUID("client_id") == nil)
                try connection.execute("DELETE FROM uploads WHERE firm_id = $1", [firms.firmA])
                let log = try connection.execute(
                    "SELECT firm_id, upload_id, matter_id FROM integration_sync_logs WHERE firm_id = $1", [firms.firmA]
                ).single()
                #expect(try log.uuid("firm_id") == firms.firmA)
                #expect(try log.optionalUUID("upload_id") == nil)
                #expect(try log.optionalUUID("matter_id") != nil)
            }
        }
    }

    @Test func theAppRoleCannotChangeAUsersRoleOrFirm() throws {
        try ServiceDatabase.with { database in
            let firms = try RowLevelSecurityTests.seedTwoFirms(database)
            let app = try Connection(url: database.appURL)
            for assignment in ["role = 'firm_admin'", "firm_id = NULL", "email = 'x@example.test'"] {
                let error = #expect(throws: DatabaseError.self) {
                    try app.transaction { connection in
                        try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firms.userA])
                        try connection.execute("UPDATE users SET \(assignment) WHERE id = $1", [firms.userA])
                    }
                }
                #expect(error?.sqlState == "42501", "\(assignment)")
            }
        }
    }

    @Test func nobodyButTheMigrationsMayCreateObjectsInThePublicSchema() throws {
        try ServiceDatabase.with { database in
            let app = try Connection(url: database.appURL)
            let error = #expect(throws: DatabaseError.self) {
                try app.execute("CREATE TABLE sneaky (id integer)")
            }
            #expect(error?.sqlState == "42501")
            let admin = try database.admin()
            let publicCanCreate = try admin.execute(
                "SELECT has_schema_privilege('public', 'public', 'CREATE') AS can"
            ).single().bool("can")
            #expect(publicCanCreate == false)
        }
    }

    @Test func theOwnershipAuditNamesATableLeftToTheSuperuserOrWithoutPolicies() throws {
        try ServiceDatabase.with { database in
            let admin = try database.admin()
            try admin.execute("CREATE TABLE forgotten (id uuid PRIMARY KEY, firm_id uuid NOT NULL)")
            try admin.execute("CREATE TABLE unpoliced (id uuid PRIMARY KEY, firm_id uuid NOT NULL)")
            try admin.execute("ALTER TABLE unpoliced OWNER TO casehug_owner")
            try admin.execute(
                """
                CREATE FUNCTION definer_left_behind() RETURNS integer LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'
                """)
            let violations = try SchemaOwnership.audit(admin, owner: "casehug_owner")
            #expect(violations.contains { $0.object == "forgotten" && $0.problem.contains("owned by") })
            #expect(violations.contains { $0.object == "forgotten" && $0.problem.contains("row-level security") })
            #expect(violations.contains { $0.object == "unpoliced" && $0.problem.contains("row-level security") })
            #expect(!violations.contains { $0.object == "unpoliced" && $0.problem.contains("owned by") })
            #expect(violations.contains { $0.object.hasPrefix("definer_left_behind") })
            #expect(throws: SchemaOwnership.AuditError.self) {
                try SchemaOwnership.verify(admin, owner: "casehug_owner")
            }
            // An owner that skips policies is itself the problem.
            let superuser = try admin.execute("SELECT current_user::text AS me").single().string("me")
            #expect(
                try SchemaOwnership.audit(admin, owner: superuser).contains {
                    $0.problem.contains("superuser or BYPASSRLS")
                })
        }
    }

    @Test func theStatusQueryNamesTheFirmEvenWhenRowLevelSecurityIsBypassed() throws {
        try ServiceDatabase.with { database in
            let firms = try RowLevelSecurityTests.seedTwoFirms(database)
            let seed = try Seed(database)
            // Firm B has no integration of its own; firm A's must not show through.
            try seed.asFirm(firms.firmB) {
                try $0.execute("DELETE FROM firm_integrations WHERE firm_id = $1", [firms.firmB])
            }
            // The superuser skips every policy, as a misconfigured process would.
            let superuser = try database.admin()
            let results = try superuser.pipeline([
                Tenancy.authenticate(firms.userB), Statement(StatusHandler.statusQuery),
            ])
            let row = try results[1].single()
            #expect(try row.bool("has_integration") == false)
            #expect(try row.optionalString("sync_action") == nil)
        }
    }

    /// Two first settings writes of a firm that has no integration row yet. A third session holds
    /// case_types locked so that both requests read their settings before either writes, which is
    /// when an unlocked first write loses the other's change.
    @Test func twoConcurrentFirstSettingsWritesBothSurvive() throws {
        try ServiceDatabase.with { database in
            let fixture = try StatusHandlerTests.Fixture(database)
            let secondAdmin = try fixture.seed.user(firm: fixture.firm, role: "firm_admin")
            let blocker = try database.admin()
            try blocker.execute("BEGIN")
            try blocker.execute("LOCK TABLE case_types IN ACCESS EXCLUSIVE MODE")
            let group = DispatchGroup()
            let answers = Locked<[Int]>([])
            for (user, body) in [
                (fixture.admin, #"{"case_type_mappings": {"asylum": "Asylum (custom)"}}"#),
                (secondAdmin, #"{"case_type_mappings": {"adoption": "Adoption (custom)"}}"#),
            ] {
                // A handler each, as two route workers have: one Database serialises its callers.
                let handler = StatusHandler(
                    configuration: Configuration(
                        databaseURL: database.appURL, jwtSecret: Array(TestEnvironment.jwtSecret.utf8)))
                DispatchQueue.global().async(group: group) {
                    let request = Request(
                        method: "PATCH", path: "/api/v1/integrations/smokeball/status",
                        headers: [
                            "authorization": "Bearer " + TestEnvironment.token(subject: user.uuidString),
                            "content-type": "application/json",
                        ], body: Array(body.utf8), requestID: "first-write")
                    let code = respond(to: request, with: handler, log: Logger(route: "status")).0.status.code
                    answers.withLock { $0.append(code) }
                }
            }
            // Both requests wait on a lock now: on case_types, or (with the fix) the second on the
            // first's new row. Then let them go.
            #expect(try Self.waitForLockWaiters(database, atLeast: 2), "both writes should be waiting on a lock")
            try blocker.execute("COMMIT")
            group.wait()
            #expect(answers.value.sorted() == [200, 200])
            let stored = try #require(try fixture.seed.settingsJSON(firm: fixture.firm))
            #expect(stored.contains("Asylum (custom)"))
            #expect(stored.contains("Adoption (custom)"))
        }
    }

    static func waitForLockWaiters(_ database: ServiceDatabase, atLeast count: Int) throws -> Bool {
        let admin = try database.admin()
        for _ in 0..<500 {
            let waiting = try admin.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                [database.name]
            ).single().int("n")
            if waiting >= count { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }
}
