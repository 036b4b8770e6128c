import Foundation
import Integration
import PostgreSQL
import Smokeball
import TestSupport
import Testing

/// The partner's one Smokeball budget, kept in PostgreSQL and shared by every process.
@Suite(.serialized) struct PartnerRateLimitTests {
    @Test("background work never takes the bucket's last token, so a click gets it at once")
    func interactiveLaneKeepsTheLastToken() throws {
        try ServiceDatabase.with { database in
            // A rate so low nothing refills during the test: burst 5 is a bucket of 4 (one of
            // slack for the network hop).
            let limit = PartnerRateLimit(
                database: Database(url: database.appURL), clientID: "lanes", ratePerSecond: 0.001, burst: 5)
            #expect(limit.capacity == 4)
            #expect(try (0..<3).map { _ in try limit.tryTake(.background) } == [0, 0, 0])
            // One token left: background must wait, a click takes it.
            let backgroundWait = try limit.tryTake(.background)
            #expect(backgroundWait > 0)
            #expect(try limit.tryTake(.interactive) == 0)
            let interactiveWait = try limit.tryTake(.interactive)
            #expect(interactiveWait > 0)
            // The wait is the time until the missing token is due: about 1/rate for a click,
            // longer for background work, which needs two.
            #expect(interactiveWait <= 1 / 0.001 + 1)
            #expect(try limit.tryTake(.background) > interactiveWait)

            // Another partner has a bucket of its own.
            let other = PartnerRateLimit(
                database: Database(url: database.appURL), clientID: "other", ratePerSecond: 0.001, burst: 1)
            #expect(other.capacity == 1)
            // With a burst of one there is nothing to keep back: background takes the only token.
            #expect(try other.tryTake(.background) == 0)
            #expect(try other.tryTake(.interactive) > 0)
        }
    }

    @Test("the app role reaches the bucket only through the owner's function, and bad arguments are refused")
    func bucketPrivileges() throws {
        try ServiceDatabase.with { database in
            let app = try Connection(url: database.appURL)
            #expect(try app.execute("SELECT smokeball_take_token('p', 5, 4, true) AS w").single().double("w") == 0)
            for statement in [
                "SELECT * FROM smokeball_rate_buckets", "UPDATE smokeball_rate_buckets SET tokens = 100",
                "DELETE FROM smokeball_rate_buckets", "INSERT INTO smokeball_rate_buckets VALUES ('x', 9, now())",
            ] {
                do {
                    try app.execute(statement)
                    Issue.record("the app role ran: \(statement)")
                } catch let error as DatabaseError {
                    #expect(error.isInsufficientPrivilege, "\(statement)")
                }
            }
            for arguments in [
                "'', 5, 4, true", "'p', 0, 4, true", "'p', 5, 0.5, true", "'p', 'NaN', 4, true",
                "'p', 5, 'NaN', true", "'p', 'Infinity', 4, true",
            ] {
                #expect(throws: DatabaseError.self) {
                    try app.execute("SELECT smokeball_take_token(\(arguments))")
                }
            }
            let admin = try database.admin()
            let owner = try admin.execute(
                """
                SELECT pg_get_userbyid(c.relowner)::text AS table_owner, c.relrowsecurity AS rls,
                       (SELECT pg_get_userbyid(p.proowner)::text FROM pg_proc p
                        WHERE p.proname = 'smokeball_take_token') AS function_owner,
                       (SELECT p.prosecdef FROM pg_proc p WHERE p.proname = 'smokeball_take_token') AS definer
                FROM pg_class c WHERE c.relname = 'smokeball_rate_buckets'
                """
            ).single()
            #expect(try owner.string("table_owner") == "casehug_owner")
            #expect(try owner.string("function_owner") == "casehug_owner")
            #expect(try owner.bool("definer"))
            #expect(try SchemaOwnership.audit(admin, owner: "casehug_owner").isEmpty)
        }
    }

    @Test("every API call takes a token first; with none due in time the call fails before Smokeball sees it")
    func everyCallTakesAToken() throws {
        try SmokeballSandbox.with { sandbox in
            let configuration = try sandbox.configuration()
            let limit = PartnerRateLimit(
                database: Database(url: sandbox.database.appURL), clientID: SmokeballSandbox.clientID,
                ratePerSecond: 0.01, burst: 3, maximumWait: 1)
            let client = try SmokeballClient(configuration: configuration, rateLimit: limit)
            let access = try sandbox.userAccess(client)
            let before = try sandbox.requestLog().count
            #expect(try client.firm(access).status == 200)
            #expect(try client.firm(access).status == 200)
            do {
                _ = try client.firm(access)
                Issue.record("a call went out without a token")
            } catch let error as SmokeballError {
                #expect(error.code == .rateLimited && error.upstreamStatus == nil)
            }
            #expect(try sandbox.requestLog().count == before + 2)
        }
    }

    /// Several processes with several threads each flood the sandbox, configured like Smokeball
    /// (5/s, burst 5), through the shared bucket: the sandbox must refuse nothing, and the
    /// partner's budget must be used (≥ 90 %).
    @Test("several processes flooding through the shared bucket get no 429 and use the partner's budget")
    func floodAcrossProcesses() throws {
        let rate = 5.0
        let burst = 5.0
        try SmokeballSandbox.with(rate: rate, burst: burst, workers: 4) { sandbox in
            let client = try sandbox.client(rateLimited: false)
            let access = try sandbox.userAccess(client)
            let processes = 4
            let threads = 4
            var environment = sandbox.environment([
                "SMOKEBALL_RATE_PER_SECOND": String(rate), "SMOKEBALL_BURST": String(burst),
            ])
            environment["DATABASE_URL"] = sandbox.database.appURL
            environment["SMOKEBALL_FLOOD_ACCESS_TOKEN"] = access.accessToken
            let succeeded = try SmokeballSandbox.runFloods(
                processes: processes, arguments: ["--threads", String(threads), "--milliseconds", "5000"],
                environment: environment)

            let log = try sandbox.requestLog().filter { $0["path"] as? String == "/firm" }
            let statuses = log.compactMap { $0["status"] as? Int }
            let times = log.compactMap { ($0["at"] as? String).flatMap(Self.date) }.sorted()
            let refused = statuses.filter { $0 == 429 }.count
            let span = (times.last ?? Date()).timeIntervalSince(times.first ?? Date())
            let budget = rate * span + burst
            let observedRate = span > 0 ? Double(log.count - 1) / span : 0
            print(
                "flood: \(processes) processes × \(threads) threads, sandbox \(rate)/s burst \(burst): "
                    + "\(log.count) requests (\(succeeded) succeeded) over \(String(format: "%.2f", span)) s, "
                    + "\(refused) × 429; observed \(String(format: "%.2f", observedRate))/s; budget over the span "
                    + "\(String(format: "%.1f", budget)) requests, used \(String(format: "%.1f", 100 * Double(log.count) / budget)) %"
            )
            #expect(refused == 0)
            #expect(statuses.allSatisfy { $0 == 200 })
            #expect(succeeded == log.count)
            #expect(Double(log.count) >= 0.9 * budget)
            #expect(observedRate >= 0.9 * rate)
        }
    }

    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}
