import Foundation
import Testing

@testable import PostgreSQL

/// A migration that changes what a cached plan returns must not break requests until the
/// workers restart: the session and its prepared statements are replaced.
@Suite struct PreparedStatementInvalidationTests {
    @Test func aReadSucceedsAfterAMigrationChangesAPreparedStatementsResultType() throws {
        try TestDatabase.with { database in
            let admin = try Connection(url: database.url)
            try admin.execute("CREATE TABLE items (id integer PRIMARY KEY, name text)")
            try admin.execute("INSERT INTO items VALUES (1, 'one')")
            let shared = database.shared()
            let read = Statement("SELECT * FROM items ORDER BY id")
            #expect(try shared.pipelinedRead([read])[0].columnNames == ["id", "name"])
            try admin.execute("ALTER TABLE items ADD COLUMN note text")
            let after = try shared.pipelinedRead([read])[0]
            #expect(after.columnNames == ["id", "name", "note"])
            #expect(try after.single().string("name") == "one")
        }
    }

    @Test func aWriteReportsTheInvalidationOnceChangesNothingAndTheNextCallSucceeds() throws {
        try TestDatabase.with { database in
            let admin = try Connection(url: database.url)
            try admin.execute("CREATE TABLE counters (id integer PRIMARY KEY, n integer NOT NULL)")
            try admin.execute("INSERT INTO counters VALUES (1, 0)")
            let shared = database.shared()
            let bump = Statement("UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING *", [1])
            #expect(try shared.pipelinedTransaction([bump])[0].single().int("n") == 1)
            try admin.execute("ALTER TABLE counters ADD COLUMN note text")
            #expect {
                _ = try shared.pipelinedTransaction([bump])
            } throws: { error in
                (error as? DatabaseError)?.sqlState == "0A000"
            }
            #expect(try admin.execute("SELECT n FROM counters").single().int("n") == 1)
            #expect(try shared.pipelinedTransaction([bump])[0].single().int("n") == 2)
        }
    }
}

@Suite struct SessionHandoutTests {
    @Test func aConnectionLeftInsideATransactionIsClosedNotHandedToTheNextCaller() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            let firstPID = try shared.withConnection { connection in
                try connection.execute("BEGIN")
                try connection.execute("SELECT set_config('app.firm_id', $1, true)", ["firm-left-open"])
                return try connection.execute("SELECT pg_backend_pid() AS pid").single().int("pid")
            }
            let (setting, secondPID) = try shared.withConnection { connection in
                let row = try connection.execute(
                    "SELECT coalesce(current_setting('app.firm_id', true), '') AS v, pg_backend_pid() AS pid"
                ).single()
                return (try row.string("v"), try row.int("pid"))
            }
            #expect(setting == "")
            #expect(secondPID != firstPID)
        }
    }

    @Test func singleRefusesMoreThanOneRow() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let two = try connection.execute("SELECT generate_series(1, 2) AS n")
            #expect(throws: DatabaseError(.tooManyRows)) { try two.single() }
            #expect(try connection.execute("SELECT 1 AS n").single().int("n") == 1)
        }
    }

    @Test func aFailedFreshConnectIsNotRetried() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            try database.takeOffline()
            defer { _ = try? database.bringOnline() }
            #expect(throws: DatabaseError.self) { _ = try shared.pipelinedRead([Statement("SELECT 1")]) }
            #expect(shared.connectAttempts == 1)
            #expect(throws: DatabaseError.self) { _ = try shared.pipelinedTransaction(readOnly: true, []) }
            #expect(shared.connectAttempts == 2)
            #expect(throws: DatabaseError.self) { try shared.transaction(readOnly: true) { _ in } }
            #expect(shared.connectAttempts == 3)
        }
    }
}

@Suite struct SessionTimeoutTests {
    static func show(_ setting: String, _ connection: Connection) throws -> String {
        // SHOW takes no parameters; the names come from this file.
        try connection.execute("SHOW \(setting)").single().string(setting)
    }

    @Test func routeSessionsStartWithTheirTimeoutsAndFormatsSetNoExtraRoundTrip() throws {
        try TestDatabase.with { database in
            let settings = try database.shared().withConnection { connection in
                try ["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "TimeZone"].map {
                    try Self.show($0, connection)
                }
            }
            #expect(settings == ["10s", "3s", "15s", "UTC"])
            let direct = try Connection(url: database.url)
            #expect(try Self.show("statement_timeout", direct) == "0")
            #expect(try Self.show("DateStyle", direct) == "ISO, YMD")
            #expect(try Self.show("IntervalStyle", direct) == "iso_8601")
        }
    }

    @Test func keepalivesAreSetForTCPHostsOnly() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url, options: .routes.allowingPrivilegedRoles)
            #expect(connection.connectionSetting("keepalives") == "1")
            #expect(connection.connectionSetting("tcp_user_timeout") == "30000")
            let socketURLs = [
                "postgresql://app@%2Frun%2Fpostgresql/db", "host=/tmp dbname=db", "dbname=db host=@abstract",
            ]
            for url in socketURLs {
                let keywords = ConnectionOptions.routes.connectionParameters(url: url, applicationName: "t").map(\.0)
                #expect(!keywords.contains("keepalives"), "\(url)")
            }
            let tcp = ConnectionOptions.routes.connectionParameters(
                url: "postgresql://app@db.internal/x", applicationName: "t")
            #expect(tcp.contains { $0 == ("keepalives_idle", "30") })
        }
    }

    @Test func aStatementPastTheStatementTimeoutFailsAsATimeout() throws {
        try TestDatabase.with { database in
            let connection = try Connection(
                url: database.url, options: ConnectionOptions(statementTimeoutMilliseconds: 200))
            do {
                try connection.execute("SELECT pg_sleep(3)")
                Issue.record("the statement outlived its timeout")
            } catch let error as DatabaseError {
                #expect(error.sqlState == "57014")
                #expect(error.isTimeout)
                #expect(!error.isUnavailable)
            }
            #expect(try connection.execute("SELECT 1 AS n").single().int("n") == 1)
        }
    }

    @Test func waitingForARowLockFailsWithinTheLockTimeout() throws {
        try TestDatabase.with { database in
            let holder = try Connection(url: database.url)
            try holder.execute("CREATE TABLE items (id integer PRIMARY KEY, n integer)")
            try holder.execute("INSERT INTO items VALUES (1, 0)")
            try holder.execute("BEGIN")
            try holder.execute("SELECT n FROM items WHERE id = 1 FOR UPDATE")
            let waiter = try Connection(url: database.url, options: ConnectionOptions(lockTimeoutMilliseconds: 200))
            // A backstop so the test cannot hang if the lock timeout were missing.
            try waiter.execute("SET statement_timeout = '5s'")
            do {
                try waiter.execute("UPDATE items SET n = 1 WHERE id = 1")
                Issue.record("updated a row locked elsewhere")
            } catch let error as DatabaseError {
                #expect(error.sqlState == "55P03")
                #expect(error.isTimeout)
            }
            try holder.execute("ROLLBACK")
        }
    }
}

@Suite struct ForkSafetyTests {
    /// Exit codes of the child, to tell which check failed.
    enum ChildResult: Int32 {
        case passed = 0, usedInheritedConnection = 10, wrongError = 11, countNotDecreased = 12, sharedSession = 13
        case databaseFailed = 14
    }

    @Test func aForkedChildNeitherUsesNorEndsTheParentsSessions() throws {
        try TestDatabase.with { database in
            var inherited: Connection? = try Connection(url: database.url)
            let pidQuery = "SELECT pg_backend_pid() AS pid"
            let directPID = try inherited!.execute(pidQuery).single().int("pid")
            let shared = database.shared()
            let sharedPID = try shared.withConnection { try $0.execute(pidQuery).single().int("pid") }

            let child = fork()
            if child == 0 {
                // The child: only exit codes, no test machinery.
                var result = ChildResult.passed
                do {
                    try inherited!.execute("SELECT 1")
                    result = .usedInheritedConnection
                } catch let error as DatabaseError {
                    if error.kind != .wrongProcess { result = .wrongError }
                } catch {
                    result = .wrongError
                }
                let before = Connection.openCount
                inherited = nil
                if result == .passed, Connection.openCount != before - 1 { result = .countNotDecreased }
                do {
                    let pid = try shared.withConnection { try $0.execute(pidQuery).single().int("pid") }
                    if result == .passed, pid == sharedPID { result = .sharedSession }
                } catch {
                    if result == .passed { result = .databaseFailed }
                }
                _exit(result.rawValue)
            }
            try #require(child > 0)
            let status = try Self.waitForExit(of: child)
            #expect(status == ChildResult.passed.rawValue)
            // Both of the parent's sessions survived the child.
            #expect(try inherited!.execute(pidQuery).single().int("pid") == directPID)
            #expect(try shared.withConnection { try $0.execute(pidQuery).single().int("pid") } == sharedPID)
        }
    }

    /// The child's exit status; a child still running after 30 s is killed (nil status).
    static func waitForExit(of child: pid_t) throws -> Int32? {
        var status: Int32 = 0
        for _ in 0..<3000 {
            let waited = waitpid(child, &status, WNOHANG)
            if waited == child {
                // WIFEXITED / WEXITSTATUS, which Swift does not import.
                return status & 0x7f == 0 ? (status >> 8) & 0xff : nil
            }
            usleep(10_000)
        }
        kill(child, SIGKILL)
        waitpid(child, &status, 0)
        return nil
    }
}

@Suite struct ParameterEncodingTests {
    @Test func bytesTravelInBinaryAndTextAsText() throws {
        let encoded = try EncodedParameters([[UInt8](repeating: 7, count: 3), "text", SQLValue.null, [UInt8]()])
        #expect(encoded.parameterFormats == [1, 0, 0, 1])
    }

    @Test func largeAndEveryByteValuePayloadsRoundTripExactly() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try connection.execute("CREATE TABLE blobs (id integer PRIMARY KEY, body bytea)")
            var generator = SystemRandomNumberGenerator()
            let large = (0..<5 * 1_048_576).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let payloads: [[UInt8]] = [large, Array(0...255), [], Array(#"\x41"#.utf8)]
            for (id, payload) in payloads.enumerated() {
                try connection.execute("INSERT INTO blobs VALUES ($1, $2)", [id, payload])
            }
            for (id, payload) in payloads.enumerated() {
                let row = try connection.execute(
                    "SELECT body, octet_length(body) AS size FROM blobs WHERE id = $1", [id]
                ).single()
                #expect(try row.int("size") == Int64(payload.count))
                #expect(try row.bytes("body") == payload)
            }
        }
    }

    @Test func textThatLooksLikeHexBytesIsStoredAsText() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try connection.execute("CREATE TABLE notes (body text)")
            try connection.execute("INSERT INTO notes VALUES ($1)", [#"\x41"#])
            #expect(try connection.execute("SELECT body FROM notes").single().string("body") == #"\x41"#)
        }
    }

    @Test(arguments: [SQLValue.text("admin\0x"), SQLValue.json(#"{"name": "a\#0b"}"#)])
    func aNulInsideTextIsRefusedBeforeSendingAndNamesOnlyThePosition(value: SQLValue) throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try connection.execute("CREATE TABLE notes (id integer, body text, doc jsonb)")
            let insert = "INSERT INTO notes (id, body, doc) VALUES ($1, $2, $3::jsonb)"
            let parameters: [any SQLValueConvertible] =
                if case .json = value { [1, "fine", value] } else { [1, value, SQLValue.json("{}")] }
            let position = if case .json = value { "$3" } else { "$2" }
            #expect(throws: DatabaseError(.invalidParameter, name: position)) {
                try connection.execute(insert, parameters)
            }
            #expect(throws: DatabaseError(.invalidParameter, name: position)) {
                _ = try database.shared().pipelinedTransaction([Statement(insert, parameters)])
            }
            let error = DatabaseError(.invalidParameter, name: position)
            #expect(!error.description.contains("admin"))
            #expect(try connection.execute("SELECT count(*) AS n FROM notes").single().int("n") == 0)
        }
    }
}

@Suite struct RoleCheckTests {
    static let refusal = "refusing to run as a superuser or BYPASSRLS role: row-level security would not apply"

    @Test func aDatabaseRefusesASuperuserSession() throws {
        try TestDatabase.with { database in
            do {
                _ = try Database(url: database.url).withConnection { _ in }
                Issue.record("ran as a superuser")
            } catch let error as DatabaseError {
                #expect(error.kind == .privilegedRole)
                #expect(error.description.contains(Self.refusal))
            }
            // A connection for admin tools checks nothing unless asked.
            #expect(try Connection(url: database.url).execute("SELECT 1 AS n").single().int("n") == 1)
        }
    }

    @Test func aPlainRolePasses() throws {
        try TestDatabase.with { database in
            try database.withRole { url in
                let user = try Database(url: url).withConnection {
                    try $0.execute("SELECT current_user::text AS u").single().string("u")
                }
                #expect(user.hasPrefix("pgtest_role_"))
            }
        }
    }

    @Test(arguments: ["BYPASSRLS", "SUPERUSER"])
    func aMemberOfAPrivilegedRoleIsRefused(attribute: String) throws {
        try TestDatabase.with { database in
            try database.withGroupRole(attribute) { group in
                try database.withRole(memberOf: [group]) { (url: String) -> Void in
                    #expect(throws: DatabaseError(.privilegedRole)) { try Database(url: url).withConnection { _ in } }
                }
            }
        }
    }

    @Test func aBypassRLSRoleIsRefused() throws {
        try TestDatabase.with { database in
            try database.withRole("BYPASSRLS") { (url: String) -> Void in
                #expect(throws: DatabaseError(.privilegedRole)) { try Database(url: url).withConnection { _ in } }
            }
        }
    }
}
