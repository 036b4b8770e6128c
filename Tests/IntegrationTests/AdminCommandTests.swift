import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// `casehug-admin` as scripts/run uses it: the demo seed and minted tokens must give a working
/// demo, and running the seed again (every `scripts/run`) must change nothing.
@Suite struct AdminCommandTests {
    static let demoSeed = TestEnvironment.repositoryRoot.appendingPathComponent("scripts/sql/demo-seed.sql").path
    static let demoFirm = "00000000-0000-4000-8000-000000000001"
    static let demoAdmin = "00000000-0000-4000-8000-0000000000a1"
    static let demoUser = "00000000-0000-4000-8000-0000000000b1"

    static func counts(_ connection: Connection) throws -> [Int64] {
        let row = try connection.execute(
            """
            SELECT (SELECT count(*) FROM firms)::int AS firms, (SELECT count(*) FROM users)::int AS users,
                   (SELECT count(*) FROM clients)::int AS clients, (SELECT count(*) FROM matters)::int AS matters,
                   (SELECT count(*) FROM uploads WHERE status = 'approved')::int AS approved
            """
        ).single()
        return try ["firms", "users", "clients", "matters", "approved"].map { try row.int($0) }
    }

    @Test func demoSeedIsIdempotentAndItsTokensWorkAgainstStatus() throws {
        try ServiceDatabase.with { database in
            let arguments = ["seed-demo", "--database-url", database.adminURL, "--file", Self.demoSeed]
            #expect(try AdminCommand.run(arguments) == "demo data seeded")
            let admin = try database.admin()
            let first = try Self.counts(admin)
            #expect(first[0] == 1 && first[1] == 2)
            #expect(first[2] >= 3 && first[3] >= 3 && first[4] >= 3)
            // Again, with the URL read from the environment (as the scripts pass it): no change.
            let fromEnvironment = ["seed-demo", "--database-url-env", "SEED_URL", "--file", Self.demoSeed]
            #expect(try AdminCommand.run(fromEnvironment, environment: ["SEED_URL": database.adminURL]) != "")
            #expect(try Self.counts(admin) == first)

            let handler = StatusHandler(
                configuration: Configuration(
                    databaseURL: database.appURL, jwtSecret: Array(TestEnvironment.jwtSecret.utf8)))
            let environment = ["CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret]
            for (subject, canManage) in [(Self.demoAdmin, true), (Self.demoUser, false)] {
                let token = try AdminCommand.run(
                    ["mint-token", "--sub", subject, "--ttl", "600"], environment: environment)
                let request = Request(
                    method: "GET", path: "/api/v1/integrations/smokeball/status",
                    headers: ["authorization": "Bearer " + token], body: [], requestID: "admin-test")
                let response = respond(to: request, with: handler, log: Logger(route: "status")).0
                #expect(response.status.code == 200)
                let body = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
                #expect(body["firm_id"] as? String == Self.demoFirm)
                #expect(body["can_manage_settings"] as? Bool == canManage)
            }
        }
    }

    @Test(arguments: [
        (["mint-token", "--sub", "not-a-uuid"], "--sub must be a uuid"),
        (["mint-token", "--sub", "00000000-0000-4000-8000-0000000000a1", "--ttl", "-5"], "--ttl must be"),
        (["seed-demo", "--file", "x.sql"], "--database-url is required"),
        (["migrate", "--database-url-env", "NOT_SET_HERE", "--dir", "x"], "NOT_SET_HERE is not set"),
        (["launch-missiles"], "unknown command"),
    ])
    func badArgumentsAreUsageErrors(arguments: [String], message: String) {
        let environment = ["CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret]
        #expect {
            try AdminCommand.run(arguments, environment: environment)
        } throws: { error in
            (error as? AdminCommand.UsageError)?.description.contains(message) == true
        }
    }

    @Test func mintTokenRefusesAShortSecret() {
        #expect(throws: AdminCommand.UsageError.self) {
            try AdminCommand.run(
                ["mint-token", "--sub", Self.demoAdmin], environment: ["CASEHUG_JWT_SECRET": "short"])
        }
    }
}
