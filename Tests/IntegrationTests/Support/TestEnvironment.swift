import Cryptography
import Foundation
import Integration
import PostgreSQL
import TestSupport

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
    /// Release builds of the routes DeployTests puts under load (scripts/test builds them).
    static var releaseBinDirectory: String { required("RELEASE_BIN_DIR") }
    static var nginx: String { variables["NGINX_BIN"] ?? "/usr/sbin/nginx" }
    static var pgDump: String { (variables["PG_BIN_DIR"] ?? "/usr/bin") + "/pg_dump" }
    static var renderNginx: String {
        variables["RENDER_NGINX"] ?? repositoryRoot.appendingPathComponent("scripts/render-nginx").path
    }
    static var migrationsDirectory: String {
        variables["MIGRATIONS_DIR"] ?? repositoryRoot.appendingPathComponent("migrations").path
    }

    /// The environment of a `scripts/run` instance of a test's own, next to any other: free HTTP,
    /// sandbox and cluster ports, its own data directory, the given executables (no build).
    static func scriptsRunEnvironment(
        dataDirectory: String, binaries: String = binDirectory, adding extra: [String: String] = [:]
    ) throws -> [String: String] {
        [
            "PATH": variables["PATH"] ?? "/usr/bin:/bin",
            "PORT": String(try Processes.freePort()), "SANDBOX_PORT": String(try Processes.freePort()),
            "RUN_PG_PORT": String(try Processes.freePort()), "CASEHUG_DATA_DIR": dataDirectory,
            "CASEHUG_BIN_DIR": binaries,
        ].merging(extra) { _, added in added }
    }

    /// The HS256 secret test tokens are signed with (the service under test gets the same).
    static let jwtSecret = "integration-test-secret-0123456789abcdef-XYZ"
    static let appPassword = "integration-test-app-password-9f8e7d"
    static let workerPassword = "integration-test-worker-password-4c3b2a"
    static let opsPassword = "integration-test-ops-password-7d6e5f"

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
        TestCluster.url(forDatabase: database, user: user, password: password, base: base)
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
    /// The job worker's role (migration 030).
    var workerURL: String {
        TestEnvironment.databaseURL(
            TestEnvironment.adminURL, database: name, user: "casehug_worker", password: TestEnvironment.workerPassword)
    }

    /// The operations role of `casehug-admin`'s ops commands (migration 043).
    var opsURL: String {
        TestEnvironment.databaseURL(
            TestEnvironment.adminURL, database: name, user: "casehug_ops", password: TestEnvironment.opsPassword)
    }

    static func create() throws -> ServiceDatabase {
        ServiceDatabase(
            name: try TestCluster.createDatabase("itest_", template: "casehug") { connection in
                try Migrator(directory: TestEnvironment.migrationsDirectory).apply(on: connection)
                try SchemaOwnership.verify(connection, owner: "casehug_owner")
                // As casehug-admin does it: the server gets the SCRAM verifier, not the password.
                for (role, password) in [
                    ("casehug_app", TestEnvironment.appPassword), ("casehug_worker", TestEnvironment.workerPassword),
                    ("casehug_ops", TestEnvironment.opsPassword),
                ] {
                    let verifier = try connection.scramHashedPassword(password, user: role)
                    let statement = try connection.execute(
                        "SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', $1::text, $2::text) AS sql", [role, verifier]
                    ).single().string("sql")
                    try connection.executeScript(statement)
                }
            })
    }

    static func with<T>(_ body: (ServiceDatabase) throws -> T) throws -> T {
        let database = try create()
        defer { database.drop() }
        return try body(database)
    }

    func drop() { TestCluster.dropDatabase(name) }

    func admin() throws -> Connection { try Connection(url: adminURL) }

    /// Refuses new connections and cuts existing ones: a database outage as the service sees it.
    func takeOffline() throws { try TestCluster.takeOffline(name) }

    func bringOnline() throws { try TestCluster.bringOnline(name) }

    static func randomSuffix() -> String { TestCluster.uniqueName("") }
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

    /// A firm with one firm admin and one standard user.
    struct FirmWithUsers {
        let id: UUID
        let admin: UUID
        let standard: UUID
    }

    func firmWithUsers(_ name: String = "Firm") throws -> FirmWithUsers {
        let id = try firm(name)
        return FirmWithUsers(id: id, admin: try user(firm: id, role: "firm_admin"), standard: try user(firm: id))
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
