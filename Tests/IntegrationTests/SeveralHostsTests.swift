import Basics
import Foundation
import HTTPClient
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// Several hosts, as one machine can show them (docs/operations.md, "Several hosts"): two
/// instances of the webhooks route (two supervisors on two sockets) behind one nginx upstream,
/// two `worker` supervisors, one PostgreSQL and the sandbox. Nothing is shared between the
/// processes but the database, so what must hold across hosts holds here: one row per delivery
/// whichever instance gets it, each job run once, one token refresh, the partner's budget.
@Suite(.serialized) struct SeveralHostsTests {
    @Test(
        "Two route instances and two workers share only PostgreSQL: one row per delivery, each job once, one refresh, no 429"
    )
    func everythingSharedLivesInPostgreSQL() throws {
        // The sandbox refuses beyond the partner's budget as Smokeball does; CaseHug's shared
        // bucket is given the same figures.
        let rate = 5.0
        let burst = 5.0
        try SmokeballSandbox.with(
            rate: rate, burst: burst, routes: ["webhooks"],
            routeEnvironment: { _, sandboxURL in WebhooksEndToEndTests.sandboxRouteEnvironment(sandboxURL) }
        ) { sandbox in
            let flow = try ConnectionFlow(sandbox)
            try flow.connectFirm()
            let service = sandbox.service
            let store = try Connection(url: sandbox.store.url)
            try store.execute(
                "UPDATE sb_webhook_subscriptions SET url = $1", [service.baseURL + WebhooksEndToEndTests.path])
            let matterCount = 12
            let seeded = try service.send(
                "POST", "/_sandbox/accounts/\(sandbox.accountID)/matters/seed",
                body: SmokeballSandbox.json(["count": matterCount]), contentType: "application/json",
                base: sandbox.url)
            try #require(seeded.status == 201)
            try service.addReplica("webhooks", workers: 2)

            let environment = sandbox.environment([
                "DATABASE_URL": sandbox.database.workerURL,
                "TOKEN_ENCRYPTION_KEY": Data(ConnectionFlow.key).base64EncodedString(),
                "SITE_URL": "https://casehug.test", "PATH": "/usr/bin:/bin",
                "SMOKEBALL_RATE_PER_SECOND": String(rate), "SMOKEBALL_BURST": String(burst),
            ])
            let workers = try (0..<2).map { _ in
                try KillableWorker(
                    executable: "worker", arguments: ["--workers", "2", "--backoff-seconds", "1"],
                    environment: environment)
            }
            defer { workers.forEach { $0.kill9() } }
            let host = flow.seed.connection
            let firm = flow.firm.id
            func count(_ connection: Connection, _ sql: String, _ values: [any SQLValueConvertible] = []) throws -> Int
            {
                Int(try connection.execute(sql, values).single().int("n"))
            }

            let job = try flow.database.transaction { connection in
                _ = try Tenancy.enter(connection, userID: flow.firm.admin)
                return try ImportMattersJob.enqueue(connection)
            }
            try Processes.waitFor("the import", timeout: 90) {
                try host.execute("SELECT status FROM jobs WHERE id = $1", [job]).single().string("status")
                    == "succeeded"
            }
            let matters = try host.execute(
                "SELECT smokeball_matter_id FROM matters WHERE firm_id = $1 ORDER BY case_number", [firm]
            ).rows.map { try $0.string("smokeball_matter_id") }
            // Seeded matters of some states are not imported (docs/inbound.md): most are.
            try #require(matters.count >= matterCount / 2, "\(matters.count) matters imported")

            // From here every call needs a new access token: the first job to call Smokeball
            // refreshes it, across four worker processes in two supervisors.
            try host.execute(
                "UPDATE firm_integrations SET token_expires_at = now() - interval '1 second' WHERE firm_id = $1",
                [firm])
            let refreshesBefore = try flow.refreshRequests()

            // One delivery, sent to each instance on its own: whichever records it, the other
            // finds the row.
            let key = try #require(try flow.stored()).webhookKey
            let requestID = UUID().uuidString.lowercased()
            let timestamp = String(DotNetTicks.from(Date()))
            let headers = [
                ("Content-Type", "application/json; charset=utf-8"), ("Timestamp", timestamp),
                ("RequestId", requestID),
                (
                    "Signature",
                    WebhookFixture.signature(
                        key: key, timestamp: timestamp, requestID: requestID, clientID: SmokeballSandbox.clientID)
                ),
            ]
            let delivery = Array(
                WebhookFixture.body(account: sandbox.accountID, type: "matter.updated", resourceID: matters[0]).utf8)
            let answers = try (1...2).map { instance in
                let answer = try service.send(
                    "POST", RunningService.instancePath("webhooks", instance), headers: headers, body: delivery)
                #expect(answer.status == 200)
                return answer.jsonObject["status"] as? String ?? ""
            }
            #expect(answers == ["accepted", "duplicate"])
            #expect(
                try count(
                    host, "SELECT count(*)::int8 AS n FROM smokeball_webhook_events WHERE smokeball_request_id = $1",
                    [requestID]) == 1)

            // Then every delivery twice (the sandbox's duplicate knob) through the one upstream:
            // a change to each matter in Smokeball, each fetched back by a job.
            let knobs = try service.send(
                "POST", "/_sandbox/webhooks/knobs",
                body: SmokeballSandbox.json(["client_id": SmokeballSandbox.clientID, "duplicate": true]),
                contentType: "application/json", base: sandbox.url)
            try #require(knobs.status == 200)
            for matter in matters {
                let changed = try service.send(
                    "POST", "/_sandbox/accounts/\(sandbox.accountID)/matters/\(matter)/status",
                    body: SmokeballSandbox.json(["status": "Pending"]), contentType: "application/json",
                    base: sandbox.url)
                try #require(changed.status == 200)
            }
            let dispatcher = try WebhookDeliveryOrderTests.dispatcher(sandboxDatabaseURL: sandbox.store.url)
            try Processes.waitFor("every delivery made and processed", timeout: 120) {
                let events = try count(
                    store, "SELECT count(*)::int8 AS n FROM sb_events WHERE account_id = $1::uuid", [sandbox.accountID])
                let fannedOut = try count(
                    store, "SELECT count(DISTINCT event_id)::int8 AS n FROM sb_webhook_deliveries")
                let pending = try count(
                    store, "SELECT count(*)::int8 AS n FROM sb_webhook_deliveries WHERE status = 'pending'")
                let unprocessed = try count(
                    host,
                    "SELECT count(*)::int8 AS n FROM smokeball_webhook_events WHERE firm_id = $1 AND NOT processed",
                    [firm])
                let open = try count(
                    host,
                    "SELECT count(*)::int8 AS n FROM jobs WHERE firm_id = $1 AND status IN ('pending', 'running')",
                    [firm])
                return events > 0 && fannedOut == events && pending == 0 && unprocessed == 0 && open == 0
            }
            try dispatcher.stop()

            // Dedupe: the dispatcher sent every delivery twice, through the upstream to either
            // instance; each left one row (and one "duplicate" answer), plus the one sent by hand.
            let deliveries = try count(
                store, "SELECT count(*)::int8 AS n FROM sb_webhook_deliveries WHERE status = 'delivered'")
            let rows = try count(
                host, "SELECT count(*)::int8 AS n FROM smokeball_webhook_events WHERE firm_id = $1", [firm])
            #expect(deliveries > matters.count)
            #expect(rows == deliveries + 1)
            let routeLogs = [service.logLines("webhooks"), service.logLines("webhooks-2")]
            // Each request's log line says how its delivery ended.
            func outcomes(_ outcome: String, _ lines: [String]) -> Int {
                lines.filter { $0.contains(#""webhook":"\#(outcome)""#) }.count
            }
            #expect(routeLogs.map { outcomes("accepted", $0) }.reduce(0, +) == rows)
            #expect(routeLogs.map { outcomes("duplicate", $0) }.reduce(0, +) >= deliveries + 1)
            // Both instances served deliveries, not only the one sent to each by hand.
            for lines in routeLogs {
                #expect(outcomes("accepted", lines) + outcomes("duplicate", lines) > 1)
            }

            // Events (each its own work item): each ran once, and both supervisors ran some.
            let jobs = try host.execute(
                "SELECT id, processed, attempts FROM smokeball_webhook_events WHERE firm_id = $1", [firm]
            ).rows
            #expect(jobs.count == rows)
            #expect(try jobs.allSatisfy { try $0.bool("processed") && $0.int("attempts") == 1 })
            let starts = workers.map { worker in
                worker.logText.split(separator: "\n").filter { $0.contains("\"job_started\"") }
            }
            for job in jobs {
                let id = try job.uuid("id").uuidString.lowercased()
                #expect(starts.joined().filter { $0.contains(id) }.count == 1, "job \(id)")
            }
            #expect(starts.allSatisfy { !$0.isEmpty })

            // One refresh for every process of both supervisors.
            let refreshes = try flow.refreshRequests() - refreshesBefore
            #expect(refreshes == 1)

            // The partner's budget: the sandbox refused nothing, though the calls were more than
            // a burst.
            let log = try sandbox.requestLog()
            let statuses = log.compactMap { $0["status"] as? Int }
            let times = log.compactMap { ($0["at"] as? String).flatMap(PartnerRateLimitTests.date) }.sorted()
            let span = (times.last ?? Date()).timeIntervalSince(times.first ?? Date())
            print(
                "several hosts: 2 webhooks instances, 2 workers × 2 processes: \(deliveries) deliveries sent twice"
                    + " -> \(rows) rows (one sent by hand), \(jobs.count) jobs (\(starts.map(\.count)) started per supervisor),"
                    + " \(refreshes) refresh; \(log.count) API calls over \(String(format: "%.1f", span)) s"
                    + " (budget \(String(format: "%.0f", rate * span + burst))), \(statuses.filter { $0 == 429 }.count) × 429"
            )
            #expect(Double(log.count) > burst)
            #expect(!statuses.contains(429))
        }
    }

    @Test(
        "The status route answers through pgbouncer in transaction mode with DATABASE_POOL_MODE=transaction, each caller its own firm, and 503 without it"
    )
    func statusThroughPgBouncer() throws {
        try ServiceDatabase.with { database in
            let admin = try database.admin()
            // What docs/operations.md asks of the role behind a transaction pooler (per database
            // here: the role is the whole cluster's).
            for setting in [
                "statement_timeout = '10s'", "lock_timeout = '3s'", "idle_in_transaction_session_timeout = '15s'",
                "TimeZone = 'UTC'", "DateStyle = 'ISO, YMD'", "IntervalStyle = 'iso_8601'",
            ] {
                try admin.executeScript("ALTER ROLE casehug_app IN DATABASE \(database.name) SET \(setting)")
            }
            let seed = try Seed(database)
            let firms = [try seed.firmWithUsers("Firm A"), try seed.firmWithUsers("Firm B")]
            // One server session for both route processes: every transaction may follow another
            // process's on it.
            let pooler = try PgBouncer(
                database: database.name, users: ["casehug_app": TestEnvironment.appPassword], poolSize: 1)
            let url = pooler.url(role: "casehug_app", password: TestEnvironment.appPassword)
            let path = "/api/v1/integrations/smokeball/status"

            let service = try RunningService(routes: ["status"], databaseURL: url, workers: 2) { _, _ in
                ["DATABASE_POOL_MODE": "transaction"]
            }
            defer { service.stop() }
            let settings = try service.send(
                "PUT", path, token: TestEnvironment.token(subject: firms[0].admin.uuidString),
                body: Array(#"{"auto_sync_on_approval":false,"auto_sync_on_matter_created":false}"#.utf8),
                contentType: "application/json")
            #expect(settings.status == 200)
            let base = service.baseURL
            let answers = Locked<[(firm: Int, status: Int, firmID: String?, approval: Bool?)]>([])
            DispatchQueue.concurrentPerform(iterations: 40) { index in
                let firm = index % 2
                let user = index % 4 < 2 ? firms[firm].admin : firms[firm].standard
                let answer = try? HTTPClient().send(
                    HTTPRequest(
                        method: "GET", url: base + path,
                        headers: [("Authorization", "Bearer " + TestEnvironment.token(subject: user.uuidString))],
                        timeout: 15))
                let body = answer?.jsonObject ?? [:]
                let approval = (body["settings"] as? [String: Any])?["auto_sync_on_approval"] as? Bool
                answers.withLock { $0.append((firm, answer?.status ?? -1, body["firm_id"] as? String, approval)) }
            }
            #expect(answers.value.count == 40)
            for answer in answers.value {
                #expect(answer.status == 200)
                #expect(answer.firmID == firms[answer.firm].id.uuidString.lowercased())
                #expect(answer.approval == (answer.firm == 1))
            }

            // The same route without the setting sends its startup options: pgbouncer refuses
            // every connection, and the route answers 503.
            let unpooled = try RunningService(routes: ["status"], databaseURL: url, workers: 1)
            defer { unpooled.stop() }
            let refused = try unpooled.send(
                "GET", path, token: TestEnvironment.token(subject: firms[0].admin.uuidString))
            #expect(refused.status == 503)
            #expect(pooler.log.contains("unsupported startup parameter: options"))
        }
    }
}
