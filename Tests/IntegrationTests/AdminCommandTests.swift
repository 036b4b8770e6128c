import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// `casehug-admin` as scripts/run uses it: the demo seed and minted tokens must give a working
/// demo, and running the seed again (every `scripts/run`) must change nothing.
@Suite struct AdminCommandTests {
    static let demoSeed = TestEnvironment.repositoryRoot.appendingPathComponent("scripts/sql/demo-seed.sql").path
    static let demoFirm = "00000000-0000-4000-8000-000000000001"
    static let demoAdmin = "00000000-0000-4000-8000-0000000000a1"
    static let demoUser = "00000000-0000-4000-8000-0000000000b1"

    static func counts(_ connection: Connection) throws -> [Int64] {
        let row = try connection.execute(
            """
            SELECT (SELECT count(*) FROM firms)::int AS firms, (SELECT count(*) FROM users)::int AS users,
                   (SELECT count(*) FROM clients)::int AS clients, (SELECT count(*) FROM matters)::int AS matters,
                   (SELECT count(*) FROM uploads WHERE status = 'approved')::int AS approved
            """
        ).single()
        return try ["firms", "users", "clients", "matters", "approved"].map { try row.int($0) }
    }

    @Test func demoSeedIsIdempotentAndItsTokensWorkAgainstStatus() throws {
        try ServiceDatabase.with { database in
            let arguments = ["seed-demo", "--database-url", database.adminURL, "--file", Self.demoSeed]
            #expect(try AdminCommand.run(arguments) == "demo data seeded")
            let admin = try database.admin()
            let first = try Self.counts(admin)
            #expect(first[0] == 1 && first[1] == 2)
            #expect(first[2] >= 3 && first[3] >= 3 && first[4] >= 3)
            // Again, with the URL read from the environment (as the scripts pass it): no change.
            let fromEnvironment = ["seed-demo", "--database-url-env", "SEED_URL", "--file", Self.demoSeed]
            #expect(try AdminCommand.run(fromEnvironment, environment: ["SEED_URL": database.adminURL]) != "")
            #expect(try Self.counts(admin) == first)

            let handler = StatusHandler(
                configuration: Configuration(
                    databaseURL: database.appURL, jwtSecret: Array(TestEnvironment.jwtSecret.utf8)))
            let environment = ["CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret]
            for (subject, canManage) in [(Self.demoAdmin, true), (Self.demoUser, false)] {
                let token = try AdminCommand.run(
                    ["mint-token", "--sub", subject, "--ttl", "600"], environment: environment)
                let request = Request(
                    method: "GET", path: "/api/v1/integrations/smokeball/status",
                    headers: ["authorization": "Bearer " + token], body: [], requestID: "admin-test")
                let response = respond(to: request, with: handler, log: Logger(route: "status")).0
                #expect(response.status.code == 200)
                let body = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
                #expect(body["firm_id"] as? String == Self.demoFirm)
                #expect(body["can_manage_settings"] as? Bool == canManage)
            }
        }
    }

    @Test(arguments: [
        (["mint-token", "--sub", "not-a-uuid"], "--sub must be a uuid"),
        (["mint-token", "--sub", "00000000-0000-4000-8000-0000000000a1", "--ttl", "-5"], "--ttl must be"),
        (["seed-demo", "--file", "x.sql"], "--database-url is required"),
        (["migrate", "--database-url-env", "NOT_SET_HERE", "--dir", "x"], "NOT_SET_HERE is not set"),
        (["launch-missiles"], "unknown command"),
        (["migrate", "--database-url", "x", "--dir", "x", "--dry-run", "yes"], "unknown argument --dry-run"),
        (["migrate", "--dir", "x", "--dir", "y"], "--dir is given twice"),
    ])
    func badArgumentsAreUsageErrors(arguments: [String], message: String) {
        let environment = ["CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret]
        #expect {
            try AdminCommand.run(arguments, environment: environment)
        } throws: { error in
            (error as? AdminCommand.UsageError)?.description.contains(message) == true
        }
    }

    @Test func mintTokenRefusesAShortSecret() {
        #expect(throws: AdminCommand.UsageError.self) {
            try AdminCommand.run(
                ["mint-token", "--sub", Self.demoAdmin], environment: ["CASEHUG_JWT_SECRET": "short"])
        }
    }

    /// What the server logged while `body` ran, with every statement of `database` logged:
    /// the cluster's log (scripts/test starts it with `-l DATADIR/server.log`), read by offset.
    static func serverLog(loggingEveryStatementOf database: ServiceDatabase, during body: () throws -> Void) throws
        -> String
    {
        let admin = try database.admin()
        try admin.executeScript("ALTER DATABASE \(database.name) SET log_statement = 'all'")
        func size() throws -> Int64 {
            try admin.execute("SELECT (pg_stat_file('server.log')).size AS size").single().int("size")
        }
        let before = try size()
        try body()
        let after = try size()
        return try admin.execute(
            "SELECT pg_read_file('server.log', $1, $2) AS text", [before, after - before]
        ).single().string("text")
    }

    static func storedPassword(_ connection: Connection, role: String) throws -> String {
        try connection.execute("SELECT rolpassword FROM pg_authid WHERE rolname = $1", [role]).single()
            .string("rolpassword")
    }

    @Test func setAppPasswordSendsTheServerOnlyAScramVerifier() throws {
        try ServiceDatabase.with { database in
            let log = try Self.serverLog(loggingEveryStatementOf: database) {
                let output = try AdminCommand.run(
                    ["set-app-password", "--database-url-env", "URL", "--password-env", "APP_PASSWORD"],
                    environment: ["URL": database.adminURL, "APP_PASSWORD": TestEnvironment.appPassword])
                #expect(output == "casehug_app can log in")
            }
            // Booleans, so a failure does not print the log (and the password in it).
            let sentVerifier = log.contains("ALTER ROLE casehug_app LOGIN PASSWORD 'SCRAM-SHA-256$4096:")
            let sentPassword = log.contains(TestEnvironment.appPassword)
            #expect(sentVerifier && !sentPassword)
            #expect(try Self.storedPassword(database.admin(), role: "casehug_app").hasPrefix("SCRAM-SHA-256$4096:"))
            // The verifier verifies: the role signs in over TCP with scram-sha-256.
            let app = try Connection(url: database.appURL)
            #expect(try app.execute("SELECT current_user AS u").single().string("u") == "casehug_app")
        }
    }

    @Test func ensureLoginRoleMakesAPlainRoleThatSignsInWithItsPassword() throws {
        try ServiceDatabase.with { database in
            let role = "itest_role_" + ServiceDatabase.randomSuffix().prefix(12)
            let password = "role-password-" + ServiceDatabase.randomSuffix()
            let admin = try database.admin()
            defer { _ = try? admin.executeScript("DROP ROLE IF EXISTS \(role)") }
            let arguments = [
                "ensure-login-role", "--database-url-env", "URL", "--role", role, "--password-env", "ROLE_PASSWORD",
            ]
            let environment = ["URL": database.adminURL, "ROLE_PASSWORD": password]
            let log = try Self.serverLog(loggingEveryStatementOf: database) {
                let first = try AdminCommand.run(arguments, environment: environment)
                // Again (every scripts/run): the same role, a working password.
                let second = try AdminCommand.run(arguments, environment: environment)
                #expect(first == "\(role) can log in" && second == first)
            }
            let sentVerifier = log.contains("PASSWORD 'SCRAM-SHA-256$4096:")
            let sentPassword = log.contains(password)
            #expect(sentVerifier && !sentPassword)
            let row = try admin.execute(
                "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles WHERE rolname = $1",
                [role]
            ).single()
            #expect(try !row.bool("rolsuper") && !row.bool("rolbypassrls") && !row.bool("rolcreatedb"))
            #expect(try !row.bool("rolcreaterole") && row.bool("rolcanlogin"))
            #expect(try Self.storedPassword(admin, role: role).hasPrefix("SCRAM-SHA-256$4096:"))
            let url = TestEnvironment.databaseURL(
                TestEnvironment.adminURL, database: database.name, user: role, password: password)
            #expect(try Connection(url: url).execute("SELECT current_user AS u").single().string("u") == role)
            let wrong = TestEnvironment.databaseURL(
                TestEnvironment.adminURL, database: database.name, user: role, password: password + "x")
            #expect(throws: DatabaseError.self) { try Connection(url: wrong) }
        }
    }

    @Test(arguments: [
        (["ensure-login-role", "--database-url", "x", "--role", "Bad-Name", "--password-env", "P"], "--role must be"),
        (["ensure-login-role", "--database-url", "x", "--role", "ok", "--password-env", "P"], "P must hold"),
        (["set-app-password", "--database-url", "x", "--password-env", "P"], "P must hold"),
    ])
    func passwordCommandsRefuseBadInputBeforeConnecting(arguments: [String], message: String) {
        #expect {
            try AdminCommand.run(arguments, environment: ["P": "short"])
        } throws: { error in
            (error as? AdminCommand.UsageError)?.description.contains(message) == true
        }
    }
}
