import Foundation
import PostgreSQL
import Testing

@Suite struct ConnectionTests {
    @Test(arguments: [
        "plain", "it's quoted", "'; DROP TABLE t; --", "ünïcödé ✓", "", "line\nbreak", "back\\slash $1",
    ])
    func textParametersRoundTripUnchanged(value: String) throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let row = try connection.execute("SELECT $1::text AS value, length($1::text) AS n", [value]).single()
            #expect(try row.string("value") == value)
            #expect(try row.int("n") == Int64(value.count))
        }
    }

    @Test func typedValuesRoundTrip() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let id = UUID()
            let when = Date(timeIntervalSince1970: 1_795_000_000.123456)
            let bytes: [UInt8] = Array(0...255)
            let row = try connection.execute(
                """
                SELECT $1::bigint AS i, $2::boolean AS b, $3::float8 AS d, $4::uuid AS u,
                       $5::timestamptz AS t, $6::bytea AS bytes, $7::jsonb AS j, $8::text AS nothing
                """,
                [Int64.max, true, 2.5, id, when, bytes, SQLValue.json(#"{"a":[1,2]}"#), SQLValue.null]
            ).single()
            #expect(try row.int("i") == Int64.max)
            #expect(try row.bool("b"))
            #expect(try row.double("d") == 2.5)
            #expect(try row.uuid("u") == id)
            #expect(abs(try row.date("t").timeIntervalSince(when)) < 0.000_002)
            #expect(try row.bytes("bytes") == bytes)
            let json = try #require(try row.json("j") as? [String: [Int]])
            #expect(json == ["a": [1, 2]])
            #expect(try row.optionalString("nothing") == nil)
            #expect(try row.isNull("nothing"))
        }
    }

    @Test func readingNullOrWrongTypeThrows() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let row = try connection.execute("SELECT NULL::text AS missing, 42 AS number").single()
            #expect(throws: DatabaseError(.unexpectedNull, name: "missing")) { try row.string("missing") }
            #expect(throws: DatabaseError(.typeMismatch, name: "number")) { try row.string("number") }
            #expect(throws: DatabaseError(.typeMismatch, name: "missing")) { try row.int("missing") }
            #expect(throws: DatabaseError(.unknownColumn, name: "absent")) { try row.int("absent") }
            #expect(try row.int("number") == 42)
        }
    }
    @Test func columnsAreFoundByTheirExactName() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let row = try connection.execute(
                #"SELECT 1 AS total, 2 AS "Total", 3 AS "with""quote", 4 AS total"#
            ).single()
            #expect(try row.int("total") == 1)
            #expect(try row.int("Total") == 2)
            #expect(try row.int(#"with"quote"#) == 3)
            #expect(throws: DatabaseError(.unknownColumn, name: "TOTAL")) { try row.int("TOTAL") }
            #expect(throws: DatabaseError(.unknownColumn, name: #""total""#)) { try row.int(#""total""#) }
        }
    }

    @Test func serverErrorsCarrySQLStateButNoValues() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try connection.execute("CREATE TABLE people (email text PRIMARY KEY)")
            try connection.execute("INSERT INTO people VALUES ($1)", ["jane@example.test"])
            do {
                try connection.execute("INSERT INTO people VALUES ($1)", ["jane@example.test"])
                Issue.record("duplicate insert succeeded")
            } catch let error as DatabaseError {
                #expect(error.isUniqueViolation)
                #expect(error.name == "people_pkey")
                #expect(!error.description.contains("jane"))
                #expect(!(error.serverMessage ?? "").contains("jane"))
            }
            #expect(throws: DatabaseError.self) { try connection.execute("SELECT * FROM no_such_table") }
            // The connection stays usable after an error.
            #expect(try connection.execute("SELECT count(*) AS n FROM people").single().int("n") == 1)
        }
    }

    @Test func transactionsCommitOrRollBack() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try connection.execute("CREATE TABLE items (id integer PRIMARY KEY)")
            try connection.transaction { try $0.execute("INSERT INTO items VALUES (1)") }
            struct Abort: Error {}
            #expect(throws: Abort.self) {
                try connection.transaction { connection in
                    try connection.execute("INSERT INTO items VALUES (2)")
                    throw Abort()
                }
            }
            #expect(throws: DatabaseError.self) {
                try connection.transaction { connection in
                    try connection.execute("INSERT INTO items VALUES (3)")
                    try connection.execute("INSERT INTO items VALUES (1)")
                }
            }
            let ids = try connection.execute("SELECT id::bigint AS id FROM items ORDER BY id").rows.map {
                try $0.int("id")
            }
            #expect(ids == [1])
        }
    }

    @Test func affectedRowsAndEmptyResults() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try connection.execute("CREATE TABLE items (id integer)")
            let inserted = try connection.execute("INSERT INTO items SELECT generate_series(1, 5)")
            #expect(inserted.affectedRows == 5)
            let none = try connection.execute("SELECT id FROM items WHERE id > $1", [100])
            #expect(none.rowCount == 0)
            #expect(none.first == nil)
            #expect(throws: DatabaseError(.noRows)) { try none.single() }
        }
    }

    @Test func connectionFailureDoesNotRevealCredentials() throws {
        let url = "postgresql://nobody:s3cret-pass@127.0.0.1:1/nothing?connect_timeout=2"
        do {
            _ = try Connection(url: url)
            Issue.record("connected to a closed port")
        } catch {
            #expect(error.kind == .connectionFailed)
            #expect(error.isUnavailable)
            #expect(!error.description.contains("s3cret"))
        }
    }
}

@Suite struct DatabaseTests {
    @Test func reconnectsAfterTheServerDropsTheSession() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            let firstPID = try shared.transaction {
                try $0.execute("SELECT pg_backend_pid() AS pid").single().int("pid")
            }
            try database.terminateSessions()
            // The dead connection is noticed at BEGIN, before anything ran, and replaced.
            let secondPID = try shared.transaction {
                try $0.execute("SELECT pg_backend_pid() AS pid").single().int("pid")
            }
            #expect(firstPID != secondPID)
        }
    }

    @Test func outageIsReportedAsUnavailableAndRecovers() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            try shared.transaction { try $0.execute("CREATE TABLE notes (body text)") }
            try shared.transaction { try $0.execute("INSERT INTO notes VALUES ($1)", ["kept"]) }
            try database.takeOffline()
            do {
                try shared.transaction { try $0.execute("INSERT INTO notes VALUES ($1)", ["lost?"]) }
                Issue.record("wrote during an outage")
            } catch let error as DatabaseError {
                #expect(error.isUnavailable)
            }
            try database.bringOnline()
            let bodies = try shared.transaction {
                try $0.execute("SELECT body FROM notes ORDER BY body").rows.map { try $0.string("body") }
            }
            #expect(bodies == ["kept"])
        }
    }
}

@Suite struct MigratorTests {
    static let first = Migrator.Migration(version: 1, name: "001_first", sql: "CREATE TABLE a (id integer);")
    static let second = Migrator.Migration(
        version: 2, name: "002_second", sql: "CREATE TABLE b (id integer); INSERT INTO b VALUES (1);")

    @Test func appliesInOrderOnceAndRecords() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let migrator = Migrator(migrations: [Self.second, Self.first])
            #expect(try migrator.apply(on: connection) == ["001_first", "002_second"])
            #expect(try migrator.apply(on: connection) == [])
            let count = try connection.execute("SELECT count(*) AS n FROM schema_migrations").single().int("n")
            #expect(count == 2)
            #expect(try connection.execute("SELECT count(*) AS n FROM b").single().int("n") == 1)
        }
    }

    @Test func refusesAnEditedMigration() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try Migrator(migrations: [Self.first]).apply(on: connection)
            let edited = Migrator.Migration(version: 1, name: "001_first", sql: "CREATE TABLE a (id bigint);")
            #expect(throws: Migrator.MigrationError.self) { try Migrator(migrations: [edited]).apply(on: connection) }
        }
    }

    @Test func aFailingMigrationLeavesNoTrace() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let broken = Migrator.Migration(
                version: 3, name: "003_broken", sql: "CREATE TABLE c (id integer); SELECT * FROM missing_table;")
            #expect(throws: DatabaseError.self) {
                try Migrator(migrations: [Self.first, broken]).apply(on: connection)
            }
            let recorded = try connection.execute("SELECT name FROM schema_migrations").rows.map {
                try $0.string("name")
            }
            #expect(recorded == ["001_first"])
            let table = try connection.execute("SELECT to_regclass('c')::text AS t").single()
            #expect(try table.optionalString("t") == nil)
        }
    }

    @Test func readsTheRepositoryMigrationsDirectory() throws {
        let directory =
            ProcessInfo.processInfo.environment["MIGRATIONS_DIR"]
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("migrations").path
        let migrator = try Migrator(directory: directory)
        #expect(migrator.migrations.map(\.version) == migrator.migrations.map(\.version).sorted())
        #expect(migrator.migrations.first?.name == "001_host_app")
        #expect(migrator.migrations.contains { $0.name == "023_smokeball" })
    }
}
