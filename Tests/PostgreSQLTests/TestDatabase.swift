import Foundation
import PostgreSQL
import TestSupport

/// A throwaway database in the test cluster that `scripts/test` starts. Each test gets its own,
/// so tests run in parallel without seeing each other's rows.
struct TestDatabase {
    let name: String
    let url: String

    static var adminURL: String { TestCluster.adminURL }

    static func create() throws -> TestDatabase {
        let name = try TestCluster.createEmptyDatabase("pgtest_")
        return TestDatabase(name: name, url: TestCluster.url(forDatabase: name))
    }

    func drop() { TestCluster.dropDatabase(name) }

    /// Runs `body` with a fresh database and drops it afterwards.
    static func with<T>(_ body: (TestDatabase) throws -> T) throws -> T {
        let database = try create()
        defer { database.drop() }
        return try body(database)
    }

    func takeOffline() throws { try TestCluster.takeOffline(name) }

    func bringOnline() throws { try TestCluster.bringOnline(name) }

    /// A `Database` for this test database with the route options but no role check (the test
    /// cluster's URL is the superuser's).
    func shared() -> Database {
        Database(url: url, options: ConnectionOptions.routes.allowingPrivilegedRoles)
    }

    /// This database's URL as `role` (with its password).
    func url(role: String, password: String) -> String {
        TestCluster.url(forDatabase: name, user: role, password: password)
    }

    /// Runs `body` with a new login role (cluster-wide, so uniquely named) created with
    /// `attributes` and granted membership in the roles of `memberOf`; drops them afterwards.
    /// Passes the role's URL for this database.
    func withRole<T>(
        _ attributes: String = "", memberOf groups: [String] = [], _ body: (String) throws -> T
    ) throws -> T {
        let role = TestCluster.uniqueName("pgtest_role_")
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
        let role = TestCluster.uniqueName("pgtest_group_")
        let admin = try Connection(url: Self.adminURL)
        try admin.executeScript("CREATE ROLE \(role) NOLOGIN \(attributes)")
        defer { _ = try? admin.executeScript("DROP ROLE IF EXISTS \(role)") }
        return try body(role)
    }

    /// Ends every session on this database (as a server restart would).
    func terminateSessions() throws { try TestCluster.terminateSessions(name) }
}
