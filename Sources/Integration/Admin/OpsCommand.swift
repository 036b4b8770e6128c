import Basics
import Foundation
import PostgreSQL

/// The operations commands of `casehug-admin` (docs/operations.md, "Ops commands"): each reads or
/// acts across firms through the narrow `ops_*` functions of migration 043, logged in as the
/// `casehug_ops` role (never a superuser or BYPASSRLS role: the connection refuses one), and
/// prints one table, or the same rows as JSON with `--json`.
enum OpsCommand {
    static let commands: Set<String> = [
        "connections", "jobs", "webhooks", "resync", "import", "rotate-encryption-key", "check", "metrics",
    ]

    /// The variable the ops role's URL is read from when no flag names one.
    static let defaultURLVariable = "CASEHUG_OPS_DATABASE_URL"

    static let usage = """
               casehug-admin connections [--firm UUID] [--json]
               casehug-admin jobs list [--firm UUID] [--status pending,running,dead,...] [--kind KIND] [--limit N] [--json]
               casehug-admin jobs retry JOB_ID [--json]      casehug-admin jobs cancel JOB_ID [--json]
               casehug-admin webhooks replay --firm UUID --since TIME --until TIME [--json]
               casehug-admin resync FIRM_ID [--json]         casehug-admin import FIRM_ID [--json]
               casehug-admin rotate-encryption-key [--batch N] [--limit N] [--json]   (reads the TOKEN_ENCRYPTION_KEY* settings)
               casehug-admin check [--dir MIGRATIONS_DIR] [--json]       (reads the routes' settings)
               casehug-admin metrics [--textfile PATH]
               (ops commands connect with --database-url-env NAME, default \(defaultURLVariable))
        """

    static func run(_ command: String, _ arguments: [String], environment: [String: String]) throws -> String {
        let invocation = try Invocation(command, arguments, environment: environment)
        switch command {
        case "connections": return try ConnectionsCommand.run(invocation)
        case "jobs": return try JobsCommand.run(invocation)
        case "webhooks": return try WebhooksReplayCommand.run(invocation)
        case "resync", "import": return try FirmJobsCommand.run(invocation)
        case "rotate-encryption-key": return try RotateKeyCommand.run(invocation)
        case "check": return try CheckCommand.run(invocation)
        default: return try MetricsCommand.run(invocation)
        }
    }

    /// An ops command's words (`jobs retry ID`), `--json`, and `--name value` flags.
    struct Invocation {
        let command: String
        let words: [String]
        let json: Bool
        let options: CommandLineOptions
        let environment: [String: String]

        static let flags: Set<String> = [
            "database-url", "database-url-env", "firm", "status", "kind", "limit", "since", "until", "batch", "dir",
            "textfile",
        ]

        init(_ command: String, _ arguments: [String], environment: [String: String]) throws {
            self.command = command
            self.environment = environment
            let words = Array(arguments.prefix { !$0.hasPrefix("--") })
            var rest = Array(arguments.dropFirst(words.count))
            json = rest.contains("--json")
            rest.removeAll { $0 == "--json" }
            self.words = words
            do {
                options = try CommandLineOptions(rest, allowed: Self.flags)
            } catch {
                throw Self.usageError(command, error.message)
            }
        }

        func usageError(_ message: String) -> AdminCommand.UsageError { Self.usageError(command, message) }

        static func usageError(_ command: String, _ message: String) -> AdminCommand.UsageError {
            AdminCommand.UsageError(description: "\(command): \(message)\n\(AdminCommand.usage)")
        }

        /// The `index`th word after the command, required.
        func word(_ index: Int, _ name: String) throws -> String {
            guard index < words.count else { throw usageError("\(name) is required") }
            return words[index]
        }

        func uuid(_ text: String, _ name: String) throws -> UUID {
            guard let id = UUID(uuidString: text) else { throw usageError("\(name) must be a uuid") }
            return id
        }

        /// `--firm`, when given.
        func firm() throws -> UUID? {
            try options["firm"].map { try uuid($0, "--firm") }
        }

        /// The ops role's connection: the URL from `--database-url`, the variable
        /// `--database-url-env` names, or `CASEHUG_OPS_DATABASE_URL`. A superuser or BYPASSRLS
        /// role is refused, as the routes refuse one.
        func connect() throws -> Connection {
            let url: String
            if let given = options["database-url"] {
                url = given
            } else {
                let name = options["database-url-env"] ?? OpsCommand.defaultURLVariable
                guard let value = environment[name], !value.isEmpty else { throw usageError("\(name) is not set") }
                url = value
            }
            return try Connection(
                url: url, applicationName: "casehug-admin", options: ConnectionOptions(refusesPrivilegedRoles: true))
        }

        /// 404-like: the firm must exist.
        func requireFirm(_ connection: Connection, _ firm: UUID) throws {
            guard try connection.execute("SELECT ops_firm_exists($1) AS found", [firm]).single().bool("found") else {
                throw OpsError(code: "unknown_firm", message: "no firm \(firm.uuidString.lowercased())")
            }
        }
    }
}

/// An ops command that could not do what was asked; `code` is stable, `message` names ids only.
struct OpsError: Error, CustomStringConvertible {
    let code: String
    let message: String
    var description: String { "\(code): \(message)" }
}

/// What an ops command prints: rows under named columns, as an aligned table or as JSON
/// (`{"<name>": [{column: value}]}`, every column present, null when there is no value).
struct OpsTable {
    enum Value {
        case text(String?)
        case integer(Int64?)
        case number(Double?)
        case flag(Bool?)
        case time(Date?)
        case id(UUID?)

        var json: Any {
            switch self {
            case .text(let value): value ?? NSNull()
            case .integer(let value): value ?? NSNull()
            case .number(let value): value ?? NSNull()
            case .flag(let value): value ?? NSNull()
            case .time(let value): value.map { Timestamp.iso8601($0) } ?? NSNull()
            case .id(let value): value?.uuidString.lowercased() ?? NSNull()
            }
        }

        var text: String {
            switch self {
            case .text(let value): value ?? "-"
            case .integer(let value): value.map(String.init) ?? "-"
            case .number(let value): value.map { String($0) } ?? "-"
            case .flag(let value): value.map { $0 ? "yes" : "no" } ?? "-"
            case .time(let value): value.map { Timestamp.iso8601($0, fractionDigits: 0) } ?? "-"
            case .id(let value): value?.uuidString.lowercased() ?? "-"
            }
        }
    }

    let name: String
    let columns: [String]
    var rows: [[Value]] = []

    func render(json: Bool) throws -> String {
        if json {
            let objects = rows.map { row in
                Dictionary(uniqueKeysWithValues: zip(columns, row.map(\.json)))
            }
            let data = try JSONSerialization.data(withJSONObject: [name: objects], options: [.sortedKeys])
            return String(decoding: data, as: UTF8.self)
        }
        let cells = [columns] + rows.map { $0.map(\.text) }
        let widths = columns.indices.map { column in cells.map { $0[column].count }.max() ?? 0 }
        var lines = cells.map { row in
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingSuffix()
        }
        if rows.isEmpty { lines.append("(none)") }
        return lines.joined(separator: "\n")
    }
}

extension String {
    fileprivate func trimmingSuffix() -> String {
        var text = self
        while text.last == " " { text.removeLast() }
        return text
    }
}
