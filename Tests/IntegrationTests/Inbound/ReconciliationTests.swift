import FastCGI
import Foundation
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

#if canImport(Glibc)
    import Glibc
#endif

/// The nightly reconciliation (`reconcile_firm`, migration 038): scheduled by the worker role
/// through `app_schedule_reconciliations`, run here on jobs claimed from the real queue against
/// the real sandbox, and by the real `worker`.
struct ReconciliationRig {
    var rig: WebhookEventRig
    var fixture: MatterSyncFixture { rig.fixture }
    var flow: ConnectionFlow { rig.flow }

    static func with(_ body: (inout ReconciliationRig) throws -> Void) throws {
        try WebhookEventRig.with { rig in
            var reconciliation = ReconciliationRig(rig: rig)
            // Connected an hour ago: due at any scheduled time within the last hour.
            try reconciliation.connectedAgo(seconds: 3600)
            try body(&reconciliation)
        }
    }

    func connectedAgo(seconds: Int, firm: UUID? = nil) throws {
        try flow.seed.asFirm(firm ?? fixture.firm) { connection in
            try connection.execute(
                """
                UPDATE firm_integrations SET connected_at = now() - make_interval(secs => $2)
                WHERE firm_id = $1 AND platform = 'smokeball'
                """, [firm ?? fixture.firm, Double(seconds)])
        }
    }

    var handler: ReconcileFirmJob {
        ReconcileFirmJob(
            tokens: fixture.tokens,
            subscriptions: WebhookSubscriptions(
                database: fixture.work, vault: flow.vault,
                notificationURL: "https://casehug.test/api/v1/integrations/smokeball/webhooks"),
            time: .standard)
    }

    /// Schedules as a worker does, with the time `offset` seconds from the database's now (UTC).
    @discardableResult
    func schedule(offset: Int) throws -> Int {
        try ReconciliationTests.schedule(fixture.work, offset: offset)
    }

    /// Runs every due `reconcile_firm` job here, as the worker would; their results.
    @discardableResult
    func runAll() throws -> [[String: Any]] {
        var results: [[String: Any]] = []
        while let job = try fixture.queue.claim(kinds: [ReconcileFirmJob.kind], leaseSeconds: 120) {
            let context = JobContext(
                scope: JobScope(jobID: job.id, leaseID: job.leaseID), database: fixture.work,
                log: Logger(route: "test"))
            do {
                let value = try handler.run(job, context)
                let json = try value.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
                _ = try fixture.queue.finish(job, resultJSON: json)
                results.append(
                    json.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any] ?? [:])
            } catch {
                _ = try fixture.queue.fail(
                    job, error: JobError.readable(error), backoff: JobBackoff(baseSeconds: 3600, capSeconds: 3600))
                results.append(["error": String(describing: error)])
            }
        }
        return results
    }

    /// Schedules a run that is due now and runs it; its result.
    func reconcile() throws -> [String: Any] {
        #expect(try schedule(offset: -60) == 1)
        let results = try runAll()
        try #require(results.count == 1)
        return results[0]
    }

    func runs() throws -> [Row] {
        try flow.seed.connection.execute(
            "SELECT * FROM smokeball_reconciliations WHERE firm_id = $1 ORDER BY run_date", [fixture.firm]
        ).rows
    }

    /// History rows of the firm written by reconciliation: action, external id, details.
    func drift() throws -> [(action: String, externalID: String?, details: [String: String])] {
        try flow.seed.connection.execute(
            """
            SELECT action, external_id, details::text AS details FROM integration_sync_logs
            WHERE firm_id = $1 AND details->>'source' = 'reconciliation' ORDER BY created_at, id
            """, [fixture.firm]
        ).rows.map {
            (
                try $0.string("action"), try $0.optionalString("external_id"),
                (try? JSONSerialization.jsonObject(with: Data(try $0.string("details").utf8))) as? [String: String]
                    ?? [:]
            )
        }
    }

    /// Pending jobs that would send something to Smokeball (an echo of what was applied).
    func echoJobs() throws -> Int {
        Int(
            try flow.seed.connection.execute(
                """
                SELECT count(*)::int8 AS n FROM jobs
                WHERE firm_id = $1 AND kind IN ('push_contact', 'sync_matter', 'sync_matters') AND status = 'pending'
                """, [fixture.firm]
            ).single().int("n"))
    }

    func contactID(_ client: UUID) throws -> String {
        try #require(try fixture.row("clients", client).optionalString("smokeball_contact_id"))
    }
}

@Suite("Nightly reconciliation")
struct ReconciliationTests {
    /// `app_schedule_reconciliations` as the worker role, the time `offset` seconds from the
    /// database's now (UTC, HH:MM:SS); how many runs it scheduled.
    static func schedule(_ database: Database, offset: Int) throws -> Int {
        Int(
            try database.transaction { connection in
                try connection.execute(
                    """
                    SELECT scheduled::int8 AS n FROM app_schedule_reconciliations(
                        to_char((now() AT TIME ZONE 'UTC') + make_interval(secs => $1), 'HH24:MI:SS')::time)
                    """, [Double(offset)]
                ).single()
            }.int("n"))
    }

    /// `app_schedule_reconciliations` as the worker role at `time` (UTC) as of `now`; how many
    /// runs it scheduled and the seconds until it should be asked again.
    static func schedule(_ database: Database, time: String, now: Date) throws -> (Int, Double) {
        let row = try database.transaction { connection in
            try connection.execute(
                "SELECT scheduled::int8 AS n, next_in_seconds FROM app_schedule_reconciliations($1::time, $2)",
                [time, now]
            ).single()
        }
        return (Int(try row.int("n")), try row.double("next_in_seconds"))
    }

    /// A firm with a Smokeball row as the callback leaves it, connected at `connectedAt`.
    static func connectedFirm(
        _ seed: Seed, at connectedAt: Date, active: Bool = true, needsReconnect: String? = nil
    ) throws -> UUID {
        let firm = try seed.firm()
        try seed.asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO firm_integrations
                    (firm_id, platform, access_token, refresh_token, is_active, needs_reconnect_reason, connected_at)
                VALUES ($1, 'smokeball', '\\x01'::bytea, '\\x02'::bytea, $2, $3, $4)
                """, [firm, active, needsReconnect, connectedAt])
        }
        return firm
    }

    @Test("RECONCILIATION_TIME takes HH:MM or HH:MM:SS in UTC, defaults to 03:00 and refuses anything else")
    func reconciliationTimeSetting() throws {
        #expect(try ReconciliationTime.fromEnvironment([:]) == .standard)
        #expect(ReconciliationTime.standard.text == "03:00:00")
        #expect(try ReconciliationTime.fromEnvironment(["RECONCILIATION_TIME": "23:59"]).text == "23:59:00")
        #expect(try ReconciliationTime.fromEnvironment(["RECONCILIATION_TIME": "00:00:07"]).text == "00:00:07")
        for bad in ["24:00", "3:00", "03:60", "03:00:60", "03-00", "03:00:00:00", " 03:00", "０３:00", "+3:00"] {
            #expect(throws: ConfigurationError.self, "\(bad)") {
                try ReconciliationTime.fromEnvironment(["RECONCILIATION_TIME": bad])
            }
        }
    }

    @Test("concurrent schedulers make exactly one run and one job per due firm per day, at the configured time")
    func schedulingIsOncePerFirmPerDay() throws {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            // Today 12:00 UTC (away from midnight); the firms connected relative to it.
            let noon = Date(
                timeIntervalSince1970: (Date().timeIntervalSince1970 / 86_400).rounded(.down) * 86_400 + 43_200)
            let connected = try Self.connectedFirm(seed, at: noon - 3600)
            let longAgo = try Self.connectedFirm(seed, at: noon - 5 * 86_400)  // several scheduled times missed
            let inactive = try Self.connectedFirm(seed, at: noon - 3600, active: false)
            let reconnect = try Self.connectedFirm(seed, at: noon - 3600, needsReconnect: "invalid_grant")
            let recent = try Self.connectedFirm(seed, at: noon - 600)  // after the scheduled time below
            _ = try seed.firm()  // never connected
            let worker = Database(url: database.workerURL)

            // Before the time (13:00): only the firm connected days ago is due, for yesterday's
            // missed time, once (not once per missed day); the others connected after it.
            let early = try Self.schedule(worker, time: "13:00", now: noon)
            #expect(early.0 == 1)
            #expect(early.1 == 3600)
            #expect(try Self.schedule(worker, time: "13:00", now: noon).0 == 0)

            // After the time (11:30): eight schedulers at once, each in its own session and
            // transaction, which stays open a moment after scheduling, so that they overlap.
            let total = Locked(0)
            let failures = Locked<[String]>([])
            let ready = DispatchSemaphore(value: 0)
            let go = DispatchSemaphore(value: 0)
            let threads = (0..<8).map { _ in
                Thread {
                    do {
                        let own = try Connection(url: database.workerURL)
                        ready.signal()
                        go.wait()
                        let made = try own.transaction { connection in
                            let made = try connection.execute(
                                "SELECT scheduled FROM app_schedule_reconciliations('11:30'::time, $1)", [noon]
                            ).single().int("scheduled")
                            try connection.execute("SELECT pg_sleep(0.3)")
                            return Int(made)
                        }
                        total.withLock { $0 += made }
                    } catch {
                        failures.withLock { $0.append(String(describing: error)) }
                        ready.signal()
                    }
                }
            }
            threads.forEach { $0.start() }
            for _ in threads { ready.wait() }
            for _ in threads { go.signal() }
            try Processes.waitFor("the schedulers", timeout: 60) { threads.allSatisfy(\.isFinished) }
            #expect(failures.value.isEmpty, "\(failures.value)")
            #expect(total.value == 2)
            let again = try Self.schedule(worker, time: "11:30", now: noon)
            #expect(again.0 == 0)
            #expect(again.1 == 84_600)  // tomorrow at 11:30

            let runs = try seed.connection.execute(
                "SELECT firm_id, run_date::text AS day, job_id FROM smokeball_reconciliations ORDER BY firm_id, run_date"
            ).rows.map { (try $0.uuid("firm_id"), try $0.string("day"), try $0.optionalUUID("job_id")) }
            #expect(runs.filter { $0.0 == connected }.count == 1)
            #expect(runs.filter { $0.0 == longAgo }.count == 2)  // the missed day, then today's
            #expect(Set(runs.map(\.0)).isSubset(of: [connected, longAgo]))
            #expect(!runs.contains { [inactive, reconnect, recent].contains($0.0) })
            let jobs = try seed.connection.execute(
                "SELECT id FROM jobs WHERE kind = 'reconcile_firm' AND status = 'pending'"
            ).rows
            #expect(jobs.count == runs.count)
            #expect(Set(try jobs.map { try $0.uuid("id") }) == Set(runs.compactMap(\.2)))
        }
    }

    @Test("changes whose webhooks were never delivered are applied, a newer applied state is kept, drift is recorded")
    func missedChangesAreApplied() throws {
        try ReconciliationRig.with { rig in
            let (matter, smokeballID, client) = try rig.rig.syncedMatter()
            // Another client (another contact), so that the contact edit below is one client's.
            let newer = try rig.fixture.matter(client: try rig.fixture.client(first: "Grace", last: "Hopper"))
            try #require(try rig.fixture.syncMatter(newer).status == .succeeded)
            let newerSmokeballID = try #require(
                try rig.fixture.row("matters", newer).optionalString("smokeball_matter_id"))
            let contactID = try rig.contactID(client)
            // A state applied from a read newer than what Smokeball will list for this matter.
            try rig.flow.seed.asFirm(rig.fixture.firm) { connection in
                try connection.execute(
                    "UPDATE matters SET smokeball_version_id = '3000000000000000000' WHERE id = $1", [newer])
            }
            // As firm users in Smokeball; the events are recorded there and never delivered.
            try rig.rig.setStatus(smokeballID, "Closed")
            try rig.rig.setStatus(newerSmokeballID, "Closed")
            try rig.rig.editContact(contactID, ["email": "ada.reconciled@example.test"])
            let echoesBefore = try rig.echoJobs()
            let mark = try rig.fixture.logMark()

            let result = try rig.reconcile()
            let requests = try rig.fixture.requests(after: mark)
            print("reconciliation: a run made \(requests.count) requests: \(requests.joined(separator: ", "))")
            #expect(result["outcome"] as? String == "succeeded", "\(result)")
            #expect(try rig.rig.matterStatus(matter) == "closed")
            #expect(try rig.rig.matterStatus(newer) == "active")
            #expect(try rig.fixture.row("clients", client).optionalString("email") == "ada.reconciled@example.test")
            #expect(result["matters_changed"] as? Int == 1)
            #expect(result["matters_stale"] as? Int == 1)
            #expect(result["clients_changed"] as? Int == 1)
            #expect(try rig.echoJobs() == echoesBefore)

            let drift = try rig.drift()
            let matterDrift = try #require(drift.first { $0.action == "matter.reconciled" })
            #expect(matterDrift.externalID == smokeballID)
            #expect(matterDrift.details["from"] == "active" && matterDrift.details["to"] == "closed")
            let contactDrift = try #require(drift.first { $0.action == "contact.reconciled" })
            #expect(contactDrift.externalID == contactID)
            #expect(contactDrift.details["fields"] == "email")
            #expect(contactDrift.details["client_id"] == client.uuidString.lowercased())
            // Ids and field names only: no personal data in the history.
            #expect(!drift.contains { $0.details.values.contains { $0.contains("@") } })
            let run = try #require(try rig.runs().last)
            #expect(try run.string("status") == "succeeded")
            #expect(try run.int("drift") == 2)

            // Run again from the same watermark (a re-run after a kill): it converges.
            try rig.flow.seed.connection.execute(
                "UPDATE smokeball_reconciliations SET status = 'running' WHERE id = $1", [try run.uuid("id")])
            try rig.flow.seed.asFirm(rig.fixture.firm) { connection in
                try JobQueue.enqueue(
                    connection, kind: ReconcileFirmJob.kind, key: "again",
                    payload: ["run_id": try run.uuid("id").uuidString.lowercased()], priority: .bulk)
            }
            let again = try rig.runAll()
            #expect(again.first?["outcome"] as? String == "succeeded")
            #expect(again.first?["matters_changed"] as? Int == 0)
            #expect(again.first?["clients_changed"] as? Int == 0)
            #expect(try rig.drift().count == drift.count)
            #expect(try rig.rig.matterStatus(matter) == "closed")
        }
    }

    @Test("a subscription deleted at Smokeball is recreated by the run and recorded as drift")
    func deletedSubscriptionIsRecreated() throws {
        try ReconciliationRig.with { rig in
            let before = try rig.flow.subscriptions()
            try #require(before.count == 1)
            try rig.flow.tokens.withAccess(UserScope(userID: rig.flow.firm.admin)) { client, access in
                _ = try client.deleteWebhookSubscription(id: before[0].id, access: access)
            }
            #expect(try rig.flow.subscriptions().isEmpty)

            let result = try rig.reconcile()
            #expect(result["outcome"] as? String == "succeeded", "\(result)")
            #expect(result["subscription"] as? String == "recreated")
            let after = try rig.flow.subscriptions()
            #expect(after.count == 1)
            #expect(after.first?.id != before[0].id)
            let drift = try rig.drift()
            #expect(drift.map(\.action) == ["subscription.created"])
            #expect(drift.first?.externalID == after.first?.id)
            #expect(try rig.runs().last?.int("drift") == 1)

            // The next day's run finds it in place: no drift.
            try rig.flow.seed.connection.execute(
                "UPDATE smokeball_reconciliations SET run_date = run_date - 1 WHERE firm_id = $1", [rig.fixture.firm])
            #expect(try rig.reconcile()["subscription"] as? String == "kept")
            #expect(try rig.drift().count == 1)
        }
    }

    @Test("a revoked account: the subscription is gone, reconciliation finds it, and status asks to reconnect")
    func revokedAccount() throws {
        try ReconciliationRig.with { rig in
            #expect(try rig.flow.subscriptions().count == 1)
            // No run yet: null, not a missing key.
            let first = try StatusHandlerTests.Fixture.status(rig.flow, user: rig.flow.firm.admin)
            #expect(first["last_reconciliation"] is NSNull)
            let revoked = try rig.flow.sandbox.service.send(
                "POST", "/_sandbox/revoke", body: SmokeballSandbox.json(["account_id": rig.flow.sandbox.accountID]),
                contentType: "application/json", base: rig.flow.sandbox.url)
            try #require(revoked.status == 200)
            #expect(try rig.flow.subscriptions().isEmpty)
            let mark = try rig.fixture.logMark()

            let result = try rig.reconcile()
            #expect(result["outcome"] as? String == "needs_reconnect", "\(result)")
            #expect(result["subscription"] as? String == "lost")
            // The refresh made first found the grant gone; nothing else was sent to Smokeball.
            #expect(try rig.fixture.requests(after: mark) == ["POST /oauth2/token 400"])
            let run = try #require(try rig.runs().last)
            #expect(try run.string("status") == "needs_reconnect")
            #expect(try run.optionalString("error")?.contains("invalid_grant") == true)
            #expect(try rig.drift().map(\.action) == ["subscription.failed"])

            let status = try StatusHandlerTests.Fixture.status(rig.flow, user: rig.flow.firm.admin)
            #expect(status["needs_reconnect"] as? Bool == true)
            #expect(status["needs_reconnect_reason"] as? String == "invalid_grant")
            #expect(status["webhook_subscription"] is NSNull)
            let last = try #require(status["last_reconciliation"] as? [String: Any])
            #expect(last["status"] as? String == "needs_reconnect")
            #expect((last["error"] as? String)?.contains("invalid_grant") == true)
            #expect(last["finished_at"] is String)
            #expect(last["drift"] as? Int == 0)
            #expect(last["matters_read"] as? Int == 0)
            // No further run is scheduled for a firm that must reconnect.
            try rig.flow.seed.connection.execute(
                "UPDATE smokeball_reconciliations SET run_date = run_date - 1 WHERE firm_id = $1", [rig.fixture.firm])
            #expect(try rig.schedule(offset: -60) == 0)
        }
    }

    @Test("a firm disconnected after its run was scheduled: the run records it, sends nothing, and is not retried")
    func disconnectedAfterScheduling() throws {
        try ReconciliationRig.with { rig in
            #expect(try rig.schedule(offset: -60) == 1)
            #expect(try rig.flow.disconnect().status == 200)
            let mark = try rig.fixture.logMark()
            let results = try rig.runAll()
            #expect(results.first?["outcome"] as? String == "failed", "\(results)")
            #expect(try rig.fixture.requests(after: mark).isEmpty)
            let run = try #require(try rig.runs().last)
            #expect(try run.string("status") == "failed")
            #expect(try run.optionalString("error") == "not_connected")
            let job = try rig.flow.seed.connection.execute(
                "SELECT status FROM jobs WHERE firm_id = $1 AND kind = 'reconcile_firm'", [rig.fixture.firm]
            ).single()
            #expect(try job.string("status") == "succeeded")
        }
    }

    @Test("the worker wakes for the scheduled time without polling, and two worker processes run it once")
    func workerWakesForTheScheduledTime() throws {
        try ReconciliationRig.with { rig in
            // A few seconds ahead, on the database's clock (which the schedule uses).
            let time = try rig.flow.seed.connection.execute(
                "SELECT to_char((now() AT TIME ZONE 'UTC') + interval '6 seconds', 'HH24:MI:SS') AS t"
            ).single().string("t")
            let worker = try KillableWorker(
                executable: "worker", arguments: ["--workers", "2"],
                environment: rig.fixture.sandbox.environment([
                    "DATABASE_URL": rig.fixture.sandbox.database.workerURL,
                    "TOKEN_ENCRYPTION_KEY": Data(ConnectionFlow.key).base64EncodedString(),
                    "SITE_URL": "https://casehug.test", "RECONCILIATION_TIME": time, "PATH": "/usr/bin:/bin",
                ]))
            var children: [pid_t] = []
            // Asleep: each worker holds the waiters' lock while it waits (JobQueue.waitingForWebhookEvents).
            try Processes.waitFor("both workers to wait", timeout: 30) {
                children = Array(Processes.childPIDs(of: worker.process.processIdentifier))
                return try rig.flow.seed.connection.execute(
                    """
                    SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = $1::oid
                        AND objsubid = 1 AND mode = 'ShareLock' AND granted
                    """, [JobQueue.webhookEventWaitersLock]
                ).rowCount == 2
            }
            #expect(try rig.runs().isEmpty)
            let before = children.compactMap { WorkerProcess.cpuSeconds($0) }.reduce(0, +)
            let idleFrom = Date()
            usleep(3_000_000)
            let after = children.compactMap { WorkerProcess.cpuSeconds($0) }.reduce(0, +)
            let idle = Date().timeIntervalSince(idleFrom)
            print(
                "reconciliation: idle CPU of 2 workers before the scheduled time: "
                    + "\(String(format: "%.2f", (after - before) / idle * 100))% over \(String(format: "%.1f", idle)) s"
            )
            #expect(try rig.runs().isEmpty)

            try Processes.waitFor("the scheduled run to finish", timeout: 60) {
                try rig.runs().first.map { try $0.optionalDate("finished_at") != nil } ?? false
            }
            let runs = try rig.runs()
            #expect(runs.count == 1)
            #expect(try runs.first?.string("status") == "succeeded", "\(worker.logText)")
            let jobs = try rig.flow.seed.connection.execute(
                "SELECT status FROM jobs WHERE firm_id = $1 AND kind = 'reconcile_firm'", [rig.fixture.firm]
            ).rows
            #expect(jobs.count == 1)
            let late = try rig.flow.seed.connection.execute(
                """
                SELECT extract(epoch FROM started_at
                    - ((date_trunc('day', started_at AT TIME ZONE 'UTC') + $2::time) AT TIME ZONE 'UTC'))::float8 AS s
                FROM smokeball_reconciliations WHERE firm_id = $1
                """, [rig.fixture.firm, time]
            ).single().double("s")
            print("reconciliation: the run started \(String(format: "%.2f", late)) s after its scheduled time \(time)")
            try worker.stop()
        }
    }
}

extension StatusHandlerTests.Fixture {
    /// The status route's answer for `user` of the flow's firm, as JSON.
    static func status(_ flow: ConnectionFlow, user: UUID) throws -> [String: Any] {
        let handler = StatusHandler(
            configuration: Configuration(
                databaseURL: flow.sandbox.database.appURL, jwtSecret: Array(TestEnvironment.jwtSecret.utf8)))
        let request = Request(
            method: "GET", path: "/api/v1/integrations/smokeball/status",
            headers: ["authorization": "Bearer " + TestEnvironment.token(subject: user.uuidString)], body: [],
            requestID: "test-request")
        let response = respond(to: request, with: handler, log: Logger(route: "status")).0
        try #require(response.status.code == 200)
        return try StatusHandlerTests.json(response)
    }
}
