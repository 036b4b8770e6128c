import Cryptography
import Foundation
import Integration
import PostgreSQL

/// Paths and services `scripts/test` provides: the test PostgreSQL cluster, built executables,
/// nginx and the renderer of its config.
enum TestEnvironment {
    static let variables = ProcessInfo.processInfo.environment
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func required(_ name: String) -> String {
        guard let value = variables[name], !value.isEmpty else {
            fatalError("\(name) is not set: run the tests with scripts/test")
        }
        return value
    }

    static var adminURL: String { required("TEST_ADMIN_DATABASE_URL") }
    static var binDirectory: String { required("BIN_DIR") }
    static var nginx: String { variables["NGINX_BIN"] ?? "/usr/sbin/nginx" }
    static var renderNginx: String {
        variables["RENDER_NGINX"] ?? repositoryRoot.appendingPathComponent("scripts/render-nginx").path
    }
    static var migrationsDirectory: String {
        variables["MIGRATIONS_DIR"] ?? repositoryRoot.appendingPathComponent("migrations").path
    }

    /// The HS256 secret test tokens are signed with (the service under test gets the same).
    static let jwtSecret = "integration-test-secret-0123456789abcdef-XYZ"
    static let appPassword = "integration-test-app-password-9f8e7d"

    static func token(
        subject: String, expiresIn: Int64 = 600, secret: String = jwtSecret, extra: [String: Any] = [:]
    ) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        var claims: [String: Any] = [
            "sub": subject, "iat": now, "exp": now + expiresIn, "role": "authenticated", "aud": "authenticated",
        ]
        for (key, value) in extra { claims[key] = value }
        return JWT.signHS256(claims: claims, secret: Array(secret.utf8))
    }

    static func databaseURL(_ base: String, database: String, user: String? = nil, password: String? = nil)
        -> String
    {
        guard var components = URLComponents(string: base) else { return base }
        components.path = "/" + database
        if let user { components.user = user }
        if let password { components.password = password }
        return components.string ?? base
    }
}

/// A migrated database per test (copied from a template migrated once per test process), with
/// an admin URL for arranging and checking rows and an app URL for the restricted role.
struct ServiceDatabase: Sendable {
    let name: String
    var adminURL: String { TestEnvironment.databaseURL(TestEnvironment.adminURL, database: name) }
    var appURL: String {
        TestEnvironment.databaseURL(
            TestEnvironment.adminURL, database: name, user: "casehug_app", password: TestEnvironment.appPassword)
    }

    private static let creation = NSLock()
    nonisolated(unsafe) private static var template: String?

    static func templateName() throws -> String {
        creation.lock()
        defer { creation.unlock() }
        if let template { return template }
        let name = "casehug_tmpl_" + randomSuffix()
        let admin = try Connection(url: TestEnvironment.adminURL)
        try admin.executeScript("CREATE DATABASE \(name)")
        do {
            let connection = try Connection(url: TestEnvironment.databaseURL(TestEnvironment.adminURL, database: name))
            try Migrator(directory: TestEnvironment.migrationsDirectory).apply(on: connection)
            try SchemaOwnership.verify(connection, owner: "casehug_owner")
            // As casehug-admin does it: the server gets the SCRAM verifier, not the password.
            let verifier = try connection.scramHashedPassword(TestEnvironment.appPassword, user: "casehug_app")
            let statement = try connection.execute(
                "SELECT format('ALTER ROLE casehug_app LOGIN PASSWORD %L', $1::text) AS sql", [verifier]
            ).single().string("sql")
            try connection.executeScript(statement)
        }
        template = name
        return name
    }

    static func create() throws -> ServiceDatabase {
        let template = try templateName()
        let name = "itest_" + randomSuffix()
        creation.lock()
        defer { creation.unlock() }
        let admin = try Connection(url: TestEnvironment.adminURL)
        // Names are generated from hex digits here; identifiers cannot be bound as parameters.
        try admin.executeScript("CREATE DATABASE \(name) TEMPLATE \(template)")
        return ServiceDatabase(name: name)
    }

    static func with<T>(_ body: (ServiceDatabase) throws -> T) throws -> T {
        let database = try create()
        defer { database.drop() }
        return try body(database)
    }

    func drop() {
        guard let admin = try? Connection(url: TestEnvironment.adminURL) else { return }
        _ = try? admin.executeScript("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    func admin() throws -> Connection { try Connection(url: adminURL) }

    /// Refuses new connections and cuts existing ones: a database outage as the service sees it.
    func takeOffline() throws {
        let admin = try Connection(url: TestEnvironment.adminURL)
        try admin.executeScript("ALTER DATABASE \(name) ALLOW_CONNECTIONS false")
        try admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name])
    }

    func bringOnline() throws {
        let admin = try Connection(url: TestEnvironment.adminURL)
        try admin.executeScript("ALTER DATABASE \(name) ALLOW_CONNECTIONS true")
    }

    static func randomSuffix() -> String {
        UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }
}

/// Rows for a test, inserted as the cluster's superuser, which bypasses row-level security
/// (superusers skip it even under FORCE). Inserts still set the firm context, so the same
/// statements would also pass the policies.
struct Seed {
    let connection: Connection

    init(_ database: ServiceDatabase) throws {
        connection = try database.admin()
    }

    /// Runs `body` with `app.firm_id` set, as the policies would require of any other role.
    @discardableResult
    func asFirm<T>(_ firm: UUID?, _ body: (Connection) throws -> T) throws -> T {
        try connection.transaction { connection in
            try connection.execute(
                "SELECT set_config('app.firm_id', $1, true)", [firm?.uuidString.lowercased() ?? ""])
            return try body(connection)
        }
    }

    @discardableResult
    func firm(_ name: String = "Firm") throws -> UUID {
        let id = UUID()
        try asFirm(id) { try $0.execute("INSERT INTO firms (id, name) VALUES ($1, $2)", [id, name]) }
        return id
    }

    @discardableResult
    func user(firm: UUID?, role: String = "standard") throws -> UUID {
        let id = UUID()
        try asFirm(firm) { connection in
            try connection.execute(
                "INSERT INTO users (id, firm_id, email, role) VALUES ($1, $2, $3, $4)",
                [id, firm, "\(id.uuidString.lowercased())@example.test", role])
        }
        return id
    }

    @discardableResult
    func matter(firm: UUID, title: String = "Matter", caseType: String = "divorce_standard") throws -> UUID {
        let id = UUID()
        try asFirm(firm) { connection in
            try connection.execute(
                "INSERT INTO matters (id, firm_id, title, case_type) VALUES ($1, $2, $3, $4)",
                [id, firm, title, caseType])
        }
        return id
    }

    func settingsJSON(firm: UUID) throws -> String? {
        try asFirm(firm) { connection in
            try connection.execute(
                "SELECT settings::text AS s FROM firm_integrations WHERE firm_id = $1 AND platform = 'smokeball'",
                [firm]
            ).first?.string("s")
        }
    }
}
