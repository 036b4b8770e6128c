import Foundation
import PostgreSQL

/// The scratch PostgreSQL cluster `scripts/test` starts (its superuser URL in
/// `TEST_ADMIN_DATABASE_URL`): throwaway databases for tests, each created from a template that
/// is migrated once per test process, so tests run in parallel without seeing each other's rows.
public enum TestCluster {
    public static var adminURL: String {
        guard let url = ProcessInfo.processInfo.environment["TEST_ADMIN_DATABASE_URL"], !url.isEmpty else {
            fatalError("TEST_ADMIN_DATABASE_URL is not set: run the tests with scripts/test")
        }
        return url
    }

    /// `base` (default: the superuser's URL) for database `name`, optionally as another role.
    public static func url(
        forDatabase name: String, user: String? = nil, password: String? = nil, base: String = adminURL
    ) -> String {
        guard var components = URLComponents(string: base) else { return base }
        components.path = "/" + name
        if let user { components.user = user }
        if let password { components.password = password }
        return components.string ?? base
    }

    /// `prefix` followed by 32 hex digits: safe to splice into SQL as an identifier, which cannot
    /// be bound as a parameter.
    public static func uniqueName(_ prefix: String) -> String {
        prefix + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var templates: [String: String] = [:]

    /// A new database copied from the template `kind`, which `prepare` builds (migrates) once.
    /// Creating databases is serialised: PostgreSQL refuses to copy a template that another
    /// session is connected to or copying.
    public static func createDatabase(
        _ prefix: String, template kind: String, prepare: (Connection) throws -> Void
    ) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let template: String
        if let existing = templates[kind] {
            template = existing
        } else {
            template = uniqueName(kind + "_tmpl_")
            try Connection(url: adminURL).executeScript("CREATE DATABASE \(template)")
            try prepare(try Connection(url: url(forDatabase: template)))
            templates[kind] = template
        }
        let name = uniqueName(prefix)
        try Connection(url: adminURL).executeScript("CREATE DATABASE \(name) TEMPLATE \(template)")
        return name
    }

    /// A new empty database.
    public static func createEmptyDatabase(_ prefix: String) throws -> String {
        let name = uniqueName(prefix)
        try Connection(url: adminURL).executeScript("CREATE DATABASE \(name)")
        return name
    }

    public static func dropDatabase(_ name: String) {
        _ = try? Connection(url: adminURL).executeScript("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Refuses new connections and ends existing ones: a database outage as a service sees it.
    public static func takeOffline(_ name: String) throws {
        let admin = try Connection(url: adminURL)
        try admin.executeScript("ALTER DATABASE \(name) ALLOW_CONNECTIONS false")
        try terminateSessions(name, admin: admin)
    }

    public static func bringOnline(_ name: String) throws {
        try Connection(url: adminURL).executeScript("ALTER DATABASE \(name) ALLOW_CONNECTIONS true")
    }

    /// Ends every session on database `name` (as a server restart would).
    public static func terminateSessions(_ name: String, admin: Connection? = nil) throws {
        try (admin ?? Connection(url: adminURL)).execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name])
    }
}
