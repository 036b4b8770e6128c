import Foundation
import PostgreSQL
import Testing

/// What counts as editing an applied migration: its statements, not its comments.
@Suite struct MigratorChecksumTests {
    static let original = Migrator.Migration(
        version: 1, name: "001_first",
        sql: "-- A comment that turns out to be wrong.\nCREATE TABLE a (id integer);\n\nINSERT INTO a VALUES (1);\n")

    @Test func correctingAWholeLineCommentOfAnAppliedMigrationIsAccepted() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try Migrator(migrations: [Self.original]).apply(on: connection)
            let corrected = Migrator.Migration(
                version: 1, name: "001_first",
                sql:
                    "-- The corrected comment,\n  -- now on two lines.\nCREATE TABLE a (id integer);   \nINSERT INTO a VALUES (1);"
            )
            #expect(try Migrator(migrations: [corrected]).apply(on: connection) == [])
        }
    }

    @Test(arguments: [
        "CREATE TABLE a (id bigint);\nINSERT INTO a VALUES (1);",
        "CREATE TABLE a (id integer);\nINSERT INTO a VALUES (2);",
        "CREATE TABLE a (id integer); -- a trailing comment is part of the statement line\nINSERT INTO a VALUES (1);",
    ])
    func editingAStatementOfAnAppliedMigrationIsRefused(sql: String) throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try Migrator(migrations: [Self.original]).apply(on: connection)
            let edited = Migrator.Migration(version: 1, name: "001_first", sql: sql)
            #expect(throws: Migrator.MigrationError.self) { try Migrator(migrations: [edited]).apply(on: connection) }
        }
    }

    /// A database migrated before comments were left out recorded the sum of the whole file.
    @Test func aChecksumRecordedOverTheWholeFileStillMatchesAnUneditedFile() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try Migrator(migrations: [Self.original]).apply(on: connection)
            try connection.execute(
                "UPDATE schema_migrations SET checksum = encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                [Self.original.sql])
            #expect(try Migrator(migrations: [Self.original]).apply(on: connection) == [])
        }
    }
}
