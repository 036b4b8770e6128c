import Foundation
import PostgreSQL

/// A throwaway database in the test cluster that `scripts/test` starts. Each test gets its own,
/// so tests run in parallel without seeing each other's rows.
struct TestDatabase {
    let name: String
    let url: String

    static var adminURL: String {
        guard let url = ProcessInfo.processInfo.environment["TEST_ADMIN_DATABASE_URL"] else {
            fatalError("TEST_ADMIN_DATABASE_URL is not set: run the tests with scripts/test")
        }
        return url
    }

    /// `adminURL` with its database name replaced.
    static func url(forDatabase name: String) -> String {
        guard var components = URLComponents(string: adminURL) else { return adminURL }
        components.path = "/" + name
        return components.string ?? adminURL
    }

    static func create() throws -> TestDatabase {
        let name = "pgtest_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let admin = try Connection(url: adminURL)
        // Identifiers cannot be parameters; the name is generated here from hex digits only.
        try admin.executeScript("CREATE DATABASE \(name)")
        return TestDatabase(name: name, url: url(forDatabase: name))
    }

    func drop() {
        guard let admin = try? Connection(url: Self.adminURL) else { return }
        _ = try? admin.executeScript("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Runs `body` with a fresh database and drops it afterwards.
    static func with<T>(_ body: (TestDatabase) throws -> T) throws -> T {
        let database = try create()
        defer { database.drop() }
        return try body(database)
    }

    /// Makes the database refuse new connections and cuts the existing ones: an outage as the
    /// service sees it.
    func takeOffline() throws {
        let admin = try Connection(url: Self.adminURL)
        try admin.executeScript("ALTER DATABASE \(name) ALLOW_CONNECTIONS false")
        try admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name])
    }

    func bringOnline() throws {
        let admin = try Connection(url: Self.adminURL)
        try admin.executeScript("ALTER DATABASE \(name) ALLOW_CONNECTIONS true")
    }

    /// A `Database` for this test database with the route options but no role check (the test
    /// cluster's URL is the superuser's).
    func shared() -> Database {
        Database(url: url, options: ConnectionOptions.routes.allowingPrivilegedRoles)
    }

    /// This database's URL as `role` (with its password).
    func url(role: String, password: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.user = role
        components.password = password
        return components.string ?? url
    }

    /// Runs `body` with a new login role (cluster-wide, so uniquely named) created with
    /// `attributes` and granted membership in the roles of `memberOf`; drops them afterwards.
    /// Passes the role's URL for this database.
    func withRole<T>(
        _ attributes: String = "", memberOf groups: [String] = [], _ body: (String) throws -> T
    ) throws -> T {
        let role = "pgtest_role_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let password = UUID().uuidString
        let admin = try Connection(url: Self.adminURL)
        // Identifiers cannot be parameters: the names are generated here; the password is bound.
        let create = try admin.execute(
            "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L \(attributes)', $1::text, $2::text) AS sql",
            [role, password]
        ).single().string("sql")
        try admin.executeScript(create)
        for group in groups { try admin.executeScript("GRANT \(group) TO \(role)") }
        defer {
            _ = try? terminateSessions()
            _ = try? admin.executeScript("DROP ROLE IF EXISTS \(role)")
        }
        return try body(url(role: role, password: password))
    }

    /// Runs `body` with a new NOLOGIN role created with `attributes`; drops it afterwards.
    func withGroupRole<T>(_ attributes: String, _ body: (String) throws -> T) throws -> T {
        let role = "pgtest_group_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let admin = try Connection(url: Self.adminURL)
        try admin.executeScript("CREATE ROLE \(role) NOLOGIN \(attributes)")
        defer { _ = try? admin.executeScript("DROP ROLE IF EXISTS \(role)") }
        return try body(role)
    }

    /// Ends every session on this database (as a server restart would).
    func terminateSessions() throws {
        let admin = try Connection(url: Self.adminURL)
        try admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name])
    }
}
