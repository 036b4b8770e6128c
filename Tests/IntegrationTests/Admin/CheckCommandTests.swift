import Cryptography
import Foundation
import TestSupport
import Testing

@testable import Integration

/// `casehug-admin check`: configuration, database, migrations and Smokeball's reachability.
@Suite struct CheckCommandTests {
    static func routeEnvironment(_ fixture: OpsFixture, apiBaseURL: String) -> [String: String] {
        [
            "DATABASE_URL": fixture.database.appURL, "CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret,
            "TOKEN_ENCRYPTION_KEY": Data(SecureRandom.bytes(32)).base64EncodedString(),
            "SMOKEBALL_API_BASE_URL": apiBaseURL,
        ]
    }

    static func checks(_ text: String) throws -> [String: (ok: Bool, detail: String)] {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        var found: [String: (Bool, String)] = [:]
        for row in try #require(object["checks"] as? [[String: Any]]) {
            found[try #require(row["check"] as? String)] = (
                try #require(row["ok"] as? Bool), try #require(row["detail"] as? String)
            )
        }
        return found
    }

    /// The failing run's table, which the error carries.
    static func failedChecks(_ body: () throws -> String) throws -> [String: (ok: Bool, detail: String)] {
        do {
            _ = try body()
        } catch let error as OpsError {
            #expect(error.code == "check_failed")
            return try checks(error.message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        Issue.record("check passed")
        return [:]
    }

    @Test func checkPassesWhenEverythingIsInPlaceAndSmokeballAnswers() throws {
        try OpsFixture.with { fixture in
            // A real HTTP server (nginx in front of the status route) stands in for Smokeball.
            let service = try RunningService(routes: ["status"], databaseURL: fixture.database.appURL)
            defer { service.stop() }
            let environment = Self.routeEnvironment(fixture, apiBaseURL: service.baseURL)
            let text = try fixture.run(
                ["check", "--dir", TestEnvironment.migrationsDirectory, "--json"], environment: environment)
            let checks = try Self.checks(text)
            #expect(Set(checks.keys) == ["configuration", "database", "migrations", "smokeball"])
            #expect(checks.values.allSatisfy { $0.ok })
            #expect(checks["database"]?.detail.contains("casehug_app") == true)
            #expect(checks["smokeball"]?.detail.contains("answered HTTP") == true)
            #expect(try fixture.run(["check"], environment: environment).contains("latest applied"))
        }
    }

    @Test func checkFailsOnBadSettingsAPrivilegedRoleAnUnappliedMigrationOrNoSmokeball() throws {
        try OpsFixture.with { fixture in
            let unreachable = "http://127.0.0.1:\(try Processes.freePort())"
            var environment = Self.routeEnvironment(fixture, apiBaseURL: unreachable)
            // A migrations directory with one more file than the database has.
            let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(
                "check-" + ServiceDatabase.randomSuffix())
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            try Data("SELECT 1;".utf8).write(to: directory.appendingPathComponent("999_not_yet.sql"))

            var checks = try Self.failedChecks {
                try fixture.run(["check", "--dir", directory.path, "--json"], environment: environment)
            }
            #expect(checks["configuration"]?.ok == true)
            #expect(checks["database"]?.ok == true)
            #expect(checks["migrations"]?.ok == false && checks["migrations"]?.detail.contains("999_not_yet") == true)
            #expect(checks["smokeball"]?.ok == false && checks["smokeball"]?.detail.contains("unreachable") == true)

            environment["DATABASE_URL"] = fixture.database.adminURL
            environment["TOKEN_ENCRYPTION_KEY"] = "not base64 of 32 bytes"
            checks = try Self.failedChecks { try fixture.run(["check", "--json"], environment: environment) }
            #expect(checks["configuration"]?.ok == false)
            #expect(checks["configuration"]?.detail.contains("TOKEN_ENCRYPTION_KEY") == true)
            #expect(checks["database"]?.ok == false && checks["database"]?.detail.contains("privileged") == true)
        }
    }
}
