import Foundation
import PostgreSQL
import TestSupport
import Testing

/// What holds behind pgbouncer 1.18 in transaction mode (docs/operations.md, "pgbouncer"): each
/// transaction may run on another server session, and pgbouncer hands one server session to
/// whichever client starts a transaction next. One server session (pool size 1) makes that
/// deterministic: two clients take turns on it.
@Suite("pgbouncer in transaction mode")
struct PgBouncerTests {
    /// Runs `body` with a login role on a fresh database and a pgbouncer in front of it.
    private func withPooler(
        ignoring ignored: [String] = [],
        _ body: (_ pooler: PgBouncer, _ role: String, _ password: String) throws -> Void
    ) throws {
        try TestDatabase.with { database in
            try database.withRole { direct in
                guard let components = URLComponents(string: direct), let role = components.user,
                    let password = components.password
                else { throw HarnessError("the role's URL has no user and password") }
                let pooler = try PgBouncer(
                    database: database.name, users: [role: password], ignoredStartupParameters: ignored)
                try body(pooler, role, password)
            }
        }
    }

    private static let pooled = ConnectionOptions(transactionPooling: true)

    @Test("pgbouncer refuses the startup options a direct connection sends, and takes a pooled one")
    func startupOptionsAreRefused() throws {
        try withPooler { pooler, role, password in
            let url = pooler.url(role: role, password: password)
            #expect {
                _ = try Connection(url: url, options: .routes.allowingPrivilegedRoles)
            } throws: { error in
                (error as? DatabaseError)?.kind == .connectionFailed
                    && (error as? DatabaseError)?.serverMessage?.contains("unsupported startup parameter: options")
                        == true
            }
            let connection = try Connection(url: url, options: Self.pooled)
            #expect(try connection.execute("SELECT 1 AS one").single().int("one") == 1)
        }
    }

    @Test("Named prepared statements break across clients sharing a server session; unnamed ones do not")
    func namedStatementsBreakUnnamedOnesHold() throws {
        // Told to drop `options`, pgbouncer lets a session-mode client in: its first statement
        // prepares casehug_1 on the one server session, and the next client's first statement
        // tries to prepare the same name there.
        try withPooler(ignoring: ["options"]) { pooler, role, password in
            let url = pooler.url(role: role, password: password)
            let first = try Connection(url: url)
            let second = try Connection(url: url)
            _ = try first.pipeline([Statement("SELECT 1 AS one")])
            #expect {
                _ = try second.pipeline([Statement("SELECT 2 AS two")])
            } throws: { error in
                (error as? DatabaseError)?.sqlState == "42P05"
            }

            let pooledFirst = try Connection(url: url, options: Self.pooled)
            let pooledSecond = try Connection(url: url, options: Self.pooled)
            for round in 0..<20 {
                let client = round.isMultiple(of: 2) ? pooledFirst : pooledSecond
                let results = try client.pipelinedTransaction([
                    Statement("SELECT $1::int AS round", [round]), Statement("SELECT $1::text AS text", ["r\(round)"]),
                ])
                #expect(try results[0].single().int("round") == round)
                #expect(try results[1].single().string("text") == "r\(round)")
            }
        }
    }

    @Test("Transaction-scoped settings end with their transaction behind the pooler; session ones leak")
    func transactionScopedSettingsHold() throws {
        try withPooler { pooler, role, password in
            let url = pooler.url(role: role, password: password)
            let first = try Connection(url: url, options: Self.pooled)
            let second = try Connection(url: url, options: Self.pooled)
            let firm = UUID().uuidString
            // The tenancy's pattern: set_config(..., true) and the statements that read it in
            // one transaction.
            let seen = try first.pipelinedTransaction([
                Statement("SELECT set_config('app.firm_id', $1, true)", [firm]),
                Statement("SELECT current_setting('app.firm_id', true) AS firm"),
            ])
            #expect(try seen[1].single().string("firm") == firm)
            let after = try second.execute("SELECT coalesce(current_setting('app.firm_id', true), '') AS firm")
            #expect(try after.single().string("firm") == "")

            // A session-level setting stays on the server session, where the next client finds it.
            try first.execute("SELECT set_config('app.leaked', 'first', false)")
            let leaked = try second.execute("SELECT coalesce(current_setting('app.leaked', true), '') AS leaked")
            #expect(try leaked.single().string("leaked") == "first")
        }
    }

    @Test("Behind the pooler the session limits come from the role, not from the connection")
    func sessionLimitsComeFromTheRole() throws {
        var options = ConnectionOptions.routes.allowingPrivilegedRoles
        options.transactionPooling = true
        try TestDatabase.with { database in
            try database.withRole { direct in
                guard let components = URLComponents(string: direct), let role = components.user,
                    let password = components.password
                else { throw HarnessError("the role's URL has no user and password") }
                func statementTimeout() throws -> String {
                    // A new pgbouncer: new server sessions, which read the role's settings as they start.
                    let pooler = try PgBouncer(database: database.name, users: [role: password])
                    let connection = try Connection(url: pooler.url(role: role, password: password), options: options)
                    return try connection.execute("SHOW statement_timeout").single().string("statement_timeout")
                }
                #expect(try statementTimeout() == "0")
                try Connection(url: TestCluster.adminURL).executeScript(
                    "ALTER ROLE \(role) SET statement_timeout = '10s'")
                #expect(try statementTimeout() == "10s")
            }
        }
    }
}
