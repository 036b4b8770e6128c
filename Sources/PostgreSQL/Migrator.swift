import Foundation

/// Applies `NNN_name.sql` files in numeric order, each in its own transaction, recording each
/// in `schema_migrations` with a checksum. Re-running applies only what is new; an applied file
/// whose statements were edited afterwards is refused rather than silently skipped. The checksum
/// leaves out whole-line `--` comments and blank lines, so a wrong comment can be corrected.
public struct Migrator: Sendable {
    public struct Migration: Sendable, Equatable {
        public let version: Int
        public let name: String
        public let sql: String

        public init(version: Int, name: String, sql: String) {
            self.version = version
            self.name = name
            self.sql = sql
        }

        /// The text the checksum covers: the file without whole-line comments, blank lines and
        /// trailing spaces. Comments inside a line stay: telling them from string contents would
        /// take an SQL lexer.
        var statements: String {
            var kept: [Substring] = []
            for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
                var end = line.endIndex
                while end > line.startIndex, [" ", "\t", "\r"].contains(line[line.index(before: end)]) {
                    end = line.index(before: end)
                }
                let text = line[..<end]
                let content = text.drop { $0 == " " || $0 == "\t" }
                if !content.isEmpty && !content.hasPrefix("--") { kept.append(text) }
            }
            return kept.joined(separator: "\n")
        }
    }

    public struct MigrationError: Error, Sendable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    public let migrations: [Migration]

    public init(migrations: [Migration]) {
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Reads every `NNN_name.sql` in `directory`; other files are ignored.
    public init(directory: String) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        var found: [Migration] = []
        var versions: Set<Int> = []
        for name in names where name.hasSuffix(".sql") {
            let stem = name.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]) else {
                throw MigrationError(message: "migration file name must look like 001_name.sql: \(name)")
            }
            guard versions.insert(version).inserted else {
                throw MigrationError(message: "two migrations share version \(version)")
            }
            let sql = try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
            found.append(Migration(version: version, name: String(stem), sql: sql))
        }
        self.init(migrations: found)
    }

    /// Applies pending migrations; returns the names applied now. Runs as the schema owner.
    @discardableResult
    public func apply(on connection: Connection) throws -> [String] {
        // A session advisory lock keeps two deploys from migrating at once.
        try connection.execute("SELECT pg_advisory_lock(7264530391)")
        defer { _ = try? connection.execute("SELECT pg_advisory_unlock(7264530391)") }
        try connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        var recorded: [Int: String] = [:]
        for row in try connection.execute("SELECT version::bigint AS version, checksum FROM schema_migrations").rows {
            recorded[Int(try row.int("version"))] = try row.string("checksum")
        }
        var applied: [String] = []
        for migration in migrations {
            func sha256(_ text: String) throws -> String {
                try connection.execute("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex') AS sum", [text])
                    .single().string("sum")
            }
            let checksum = try sha256(migration.statements)
            if let existing = recorded[migration.version] {
                // Databases migrated before comments were left out recorded the whole file's sum.
                let unchanged = try existing == checksum || existing == sha256(migration.sql)
                guard unchanged else {
                    throw MigrationError(message: "migration \(migration.name) changed after it was applied")
                }
                continue
            }
            try connection.transaction { connection in
                try connection.executeScript(migration.sql)
                try connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    [migration.version, migration.name, checksum])
            }
            applied.append(migration.name)
        }
        return applied
    }
}
