import Foundation
import PostgreSQL
import Testing

@testable import FastCGI
@testable import Integration

/// What a route's supervisor makes sure of before forking: a role that row-level security binds,
/// and no database connection left open to be shared by its workers.
@Suite(.serialized) struct RouteStartupTests {
    /// Starts the real `route` executable with `databaseURL`; returns its exit status if it
    /// ended within `seconds` (nil if still serving, then stops it) and what it logged.
    static func startRoute(_ route: String = "status", databaseURL: String, seconds: Double) throws -> (
        status: Int32?, log: String
    ) {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("casehug-startup-" + ServiceDatabase.randomSuffix())
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let logURL = directory.appendingPathComponent("status.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEnvironment.binDirectory).appendingPathComponent(route)
        process.arguments = ["--socket", directory.appendingPathComponent("\(route).sock").path, "--workers", "1"]
        // What the connection routes need before the role check can run: the key that seals
        // tokens and the site's URL.
        process.environment = [
            "DATABASE_URL": databaseURL, "CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret,
            "TOKEN_ENCRYPTION_KEY": Data(repeating: 7, count: 32).base64EncodedString(),
            "SITE_URL": "https://casehug.test",
        ]
        let log = try FileHandle(forWritingTo: logURL)
        process.standardError = log
        process.standardOutput = log
        try process.run()
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        var status: Int32?
        if process.isRunning {
            process.terminate()
        } else {
            status = process.terminationStatus
        }
        process.waitUntilExit()
        return (status, (try? String(contentsOf: logURL, encoding: .utf8)) ?? "")
    }

    /// Every route, and `hello-db` too: the benchmark's floor must run as the routes do.
    @Test(arguments: ["status", "connect", "callback", "disconnect", "sync", "webhooks", "hello-db"])
    func aRouteStartedWithTheSuperuserURLRefusesToServeAndSaysWhy(route: String) throws {
        try ServiceDatabase.with { database in
            let (status, log) = try Self.startRoute(route, databaseURL: database.adminURL, seconds: 15)
            #expect(status == 2, "the route should have stopped at start; log: \(log)")
            #expect(log.contains("startup_failed"))
            #expect(log.contains("refusing to run as a superuser or BYPASSRLS role"))
            #expect(!log.contains(TestEnvironment.adminURL), "the log must not carry the database URL")
        }
    }

    @Test(arguments: ["status", "connect", "callback", "disconnect", "sync", "webhooks"])
    func theSameRouteWithTheAppRoleServes(route: String) throws {
        try ServiceDatabase.with { database in
            let (status, log) = try Self.startRoute(route, databaseURL: database.appURL, seconds: 1.5)
            #expect(status == nil, "the route should still be serving; log: \(log)")
            #expect(!log.contains("startup_failed"))
        }
    }

    @Test func anUnreachableDatabaseDoesNotStopTheRoute() throws {
        try ServiceDatabase.with { database in
            try database.takeOffline()
            defer { try? database.bringOnline() }
            let (status, log) = try Self.startRoute(databaseURL: database.appURL, seconds: 1.5)
            #expect(status == nil, "the route should serve 503s until the database is back; log: \(log)")
            #expect(log.contains("database_unavailable_at_start"))
        }
    }

    @Test func preparingLeavesNoConnectionOpenAndForkingWithOneOpenIsRefused() throws {
        try ServiceDatabase.with { database in
            let log = Logger(route: "test")
            // Counted on the server by a name of its own: other suites open connections meanwhile.
            let name = "startup-check-" + ServiceDatabase.randomSuffix()
            try Route.prepare(Database(url: database.appURL, applicationName: name), log: log)
            let admin = try database.admin()
            var sessions: Int64 = -1
            for _ in 0..<100 {
                sessions = try admin.execute(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", [name]
                ).single().int("n")
                if sessions == 0 { break }
                Thread.sleep(forTimeInterval: 0.02)
            }
            #expect(sessions == 0, "the startup check left its session open")
            #expect(throws: DatabaseError.self) { try Route.prepare(Database(url: database.adminURL), log: log) }
            // Other suites run in parallel and open connections of their own, so the check is
            // asked while this one surely holds a connection open.
            let held = try Connection(url: database.appURL)
            #expect(ForkSafety.unsafeReason()?.contains("database connection(s) open") == true)
            _ = held
        }
    }
}
