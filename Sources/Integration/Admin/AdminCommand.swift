import Basics
import Cryptography
import Foundation
import PostgreSQL

/// `casehug-admin`: the operations scripts and deploys need besides serving requests.
///
///     casehug-admin migrate --database-url URL --dir migrations [--owner casehug_owner]
///     casehug-admin seed-demo --database-url URL --file scripts/sql/demo-seed.sql
///     casehug-admin set-app-password --database-url URL --password-env APP_DB_PASSWORD
///     casehug-admin ensure-login-role --database-url URL --role NAME --password-env NAME
///     casehug-admin mint-token --sub UUID [--ttl SECONDS]        (reads CASEHUG_JWT_SECRET)
///
/// and the operations commands (`OpsCommand`: connections, jobs, webhooks replay, resync,
/// import, rotate-encryption-key, check, metrics), which log in as the `casehug_ops` role.
///
/// `--database-url-env NAME` reads the URL from the environment variable NAME instead, so a
/// URL with a password never shows in the process list. Passwords are read from the variable
/// `--password-env` names and reach the server only as SCRAM-SHA-256 verifiers.
public enum AdminCommand {
    public struct UsageError: Error, CustomStringConvertible {
        public let description: String
    }

    public static let usage = """
        usage: casehug-admin migrate (--database-url URL | --database-url-env NAME) --dir DIR [--owner ROLE]
               casehug-admin seed-demo (--database-url URL | --database-url-env NAME) --file FILE
               casehug-admin set-app-password (--database-url URL | --database-url-env NAME) --password-env NAME
               casehug-admin ensure-login-role (--database-url URL | --database-url-env NAME) --role NAME --password-env NAME
               casehug-admin mint-token --sub UUID [--ttl SECONDS]
        """ + "\n" + OpsCommand.usage

    /// Runs one command; returns what to print on stdout.
    public static func run(
        _ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> String {
        guard let command = arguments.first else { throw UsageError(description: usage) }
        if OpsCommand.commands.contains(command) {
            return try OpsCommand.run(command, Array(arguments.dropFirst()), environment: environment)
        }
        let options = try parseOptions(Array(arguments.dropFirst()))
        func option(_ name: String) throws -> String {
            guard let value = options[name], !value.isEmpty else {
                throw UsageError(description: "\(command): --\(name) is required\n\(usage)")
            }
            return value
        }
        func databaseURL() throws -> String {
            guard let name = options["database-url-env"] else { return try option("database-url") }
            guard let url = environment[name], !url.isEmpty else {
                throw UsageError(description: "\(command): \(name) is not set")
            }
            return url
        }
        func passwordFromEnvironment(_ name: String) throws -> String {
            guard let password = environment[name], password.count >= 16 else {
                throw UsageError(description: "\(command): \(name) must hold at least 16 characters")
            }
            return password
        }
        switch command {
        case "migrate":
            let connection = try Connection(url: try databaseURL(), applicationName: "casehug-admin")
            let applied = try Migrator(directory: try option("dir")).apply(on: connection)
            // The service's schema must stay where row-level security binds (SchemaOwnership).
            if let owner = options["owner"] { try SchemaOwnership.verify(connection, owner: owner) }
            return applied.isEmpty ? "migrations: up to date" : "migrations applied: " + applied.joined(separator: ", ")
        case "seed-demo":
            let connection = try Connection(url: try databaseURL(), applicationName: "casehug-admin")
            let sql = try String(contentsOfFile: try option("file"), encoding: .utf8)
            try connection.transaction { try $0.executeScript(sql) }
            return "demo data seeded"
        case "set-app-password":
            let password = try passwordFromEnvironment(try option("password-env"))
            let connection = try Connection(url: try databaseURL(), applicationName: "casehug-admin")
            try connection.executeScript(
                try passwordStatement(connection, role: "casehug_app", attributes: "LOGIN", password: password))
            return "casehug_app can log in"
        case "ensure-login-role":
            let role = try option("role")
            guard role.range(of: "^[a-z_][a-z0-9_]{0,62}$", options: .regularExpression) != nil else {
                throw UsageError(description: "ensure-login-role: --role must be a lower-case identifier")
            }
            let password = try passwordFromEnvironment(try option("password-env"))
            let connection = try Connection(url: try databaseURL(), applicationName: "casehug-admin")
            try connection.transaction { connection in
                if try connection.execute("SELECT 1 FROM pg_roles WHERE rolname = $1", [role]).rowCount == 0 {
                    try connection.executeScript(
                        try connection.execute("SELECT format('CREATE ROLE %I', $1::text) AS sql", [role]).single()
                            .string("sql"))
                }
                // A plain login role whatever it was before: no superuser, no BYPASSRLS, no role or
                // database creation.
                try connection.executeScript(
                    try passwordStatement(
                        connection, role: role, attributes: "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
                        password: password))
            }
            return "\(role) can log in"
        case "mint-token":
            guard let secret = environment["CASEHUG_JWT_SECRET"], secret.utf8.count >= 32 else {
                throw UsageError(description: "mint-token: CASEHUG_JWT_SECRET must be set (at least 32 bytes)")
            }
            let subject = try option("sub")
            guard UUID(uuidString: subject) != nil else {
                throw UsageError(description: "mint-token: --sub must be a uuid")
            }
            let ttl = Int64(options["ttl"] ?? "3600") ?? 0
            guard ttl > 0 else { throw UsageError(description: "mint-token: --ttl must be a positive number") }
            let now = Int64(Date().timeIntervalSince1970)
            let claims: [String: Any] = [
                "sub": subject.lowercased(), "iat": now, "exp": now + ttl, "role": "authenticated",
                "aud": "authenticated",
            ]
            return JWT.signHS256(claims: claims, secret: Array(secret.utf8))
        default:
            throw UsageError(description: "unknown command \(command)\n\(usage)")
        }
    }

    /// `ALTER ROLE role attributes PASSWORD 'SCRAM-SHA-256$...'`. libpq computes the verifier on
    /// this side: the plain password is in no statement, so no server log can show it. ALTER ROLE
    /// takes no parameters; the server's format() quotes the name and the verifier. `attributes`
    /// is a literal of this file.
    static func passwordStatement(_ connection: Connection, role: String, attributes: String, password: String)
        throws -> String
    {
        let verifier = try connection.scramHashedPassword(password, user: role)
        return try connection.execute(
            "SELECT format('ALTER ROLE %I \(attributes) PASSWORD %L', $1::text, $2::text) AS sql", [role, verifier]
        ).single().string("sql")
    }

    static let flags: Set<String> = [
        "database-url", "database-url-env", "dir", "owner", "file", "password-env", "role", "sub", "ttl",
    ]

    static func parseOptions(_ arguments: [String]) throws -> CommandLineOptions {
        do {
            return try CommandLineOptions(arguments, allowed: flags)
        } catch {
            throw UsageError(description: "\(error.message)\n\(usage)")
        }
    }
}
