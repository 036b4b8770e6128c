import Basics
import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

#if canImport(Glibc)
    import Glibc
#endif

/// The stored webhook event as its own work item (migration 045): claimed by real worker
/// processes (`job-test-worker` with `JOB_TEST_WEBHOOK_EVENTS=1`, whose `process_webhook_event`
/// records each attempt in `job_test_events`), and by the real `WebhookEventJob` against the
/// sandbox for retries.
@Suite struct WebhookEventQueueTests {
    /// Stores events as the webhooks route does (one row each, no job and, unless `notify`, no
    /// notification either): their ids. `payload` tells the test handler what to do.
    static func store(
        _ database: ServiceDatabase, firm: Seed.FirmWithUsers, count: Int, payload: [String: Int] = [:],
        notify: Bool = true
    ) throws -> [UUID] {
        let json = String(decoding: try JSONEncoder().encode(payload), as: UTF8.self)
        let ids = try Database(url: database.appURL).transaction { connection in
            _ = try Tenancy.enter(connection, userID: firm.standard)
            return try (0..<count).map { _ in
                try connection.execute(
                    """
                    INSERT INTO smokeball_webhook_events (firm_id, event_type, payload, dedupe_key)
                    VALUES (app_current_firm(), 'files.updated', $1::jsonb, gen_random_uuid()::text) RETURNING id
                    """, [SQLValue.json(json)]
                ).single().uuid("id")
            }
        }
        if notify { try database.admin().execute("SELECT pg_notify('casehug_jobs', '')") }
        return ids
    }

    static func event(_ database: ServiceDatabase, _ id: UUID) throws -> Row {
        try database.admin().execute(
            """
            SELECT processed, status, attempts, error_message, lease_id IS NOT NULL AS leased
            FROM smokeball_webhook_events WHERE id = $1
            """, [id]
        ).single()
    }

    static func worker(
        _ fixture: QueueFixture, workers: Int, leaseSeconds: Int = 30, pollSeconds: Int? = nil
    ) throws -> WorkerProcess {
        try WorkerProcess(
            fixture, workers: workers, leaseSeconds: leaseSeconds,
            extraArguments: pollSeconds.map { ["--poll-seconds", String($0)] } ?? [],
            environment: ["JOB_TEST_WEBHOOK_EVENTS": "1"])
    }

    @Test("an event is processed exactly once while two worker supervisors compete for the queue")
    func exactlyOnceWithCompetingWorkers() throws {
        try QueueFixture.with { fixture in
            try WorkerProcessTests.createEventsTable(fixture)
            // Each takes a while, so the claims of four processes overlap.
            let ids = try Self.store(fixture.database, firm: fixture.firmA, count: 40, payload: ["sleep_ms": 20])
            let workers = [try Self.worker(fixture, workers: 2), try Self.worker(fixture, workers: 2)]
            try Processes.waitFor("every event processed", timeout: 60) {
                try ids.allSatisfy { try Self.event(fixture.database, $0).bool("processed") }
            }
            var pids: Set<Int64> = []
            for id in ids {
                let effects = try WorkerProcessTests.events(fixture, id, "effect")
                #expect(effects.count == 1, "event \(id)")
                #expect(try WorkerProcessTests.events(fixture, id, "started").count == 1, "event \(id)")
                let row = try Self.event(fixture.database, id)
                #expect(
                    try row.int("attempts") == 1 && row.optionalString("status") == "applied" && !row.bool("leased"))
                pids.formUnion(effects.map(\.pid))
            }
            #expect(try fixture.count() == 0, "no job rows")
            print("event queue: \(ids.count) events, processed once each by \(pids.count) worker processes")
            for worker in workers { worker.terminate() }
            for worker in workers { try worker.waitForExit() }
        }
    }

    @Test("kill -9 of a worker mid-event releases it after the lease, and it is processed once by another")
    func killedWorkerReleasesTheEvent() throws {
        try QueueFixture.with { fixture in
            try WorkerProcessTests.createEventsTable(fixture)
            let worker = try Self.worker(fixture, workers: 2, leaseSeconds: 2)
            // The first attempt blocks until killed; the second gets through.
            let id = try #require(
                try Self.store(fixture.database, firm: fixture.firmA, count: 1, payload: ["block_attempts": 1]).first)
            var victim: pid_t = 0
            try Processes.waitFor("the first attempt to start", timeout: 30) {
                guard let started = try WorkerProcessTests.events(fixture, id, "started").first else { return false }
                victim = pid_t(started.pid)
                return true
            }
            #expect(worker.workerPIDs.contains(victim))
            kill(victim, SIGKILL)
            try Processes.waitFor("the event to be claimed again after its lease and processed", timeout: 60) {
                try Self.event(fixture.database, id).bool("processed")
            }
            let effects = try WorkerProcessTests.events(fixture, id, "effect")
            #expect(effects.count == 1)
            #expect(effects.first?.attempt == 2)
            #expect(effects.first.map { pid_t($0.pid) } != victim)
            #expect(try WorkerProcessTests.events(fixture, id, "started").count == 2)
            let row = try Self.event(fixture.database, id)
            #expect(try row.int("attempts") == 2 && row.optionalString("status") == "applied" && !row.bool("leased"))
            worker.terminate()
            try worker.waitForExit()
        }
    }

    @Test("an event stored without a notification (a lost NOTIFY) is found by the idle worker's poll")
    func lostNotificationIsPolled() throws {
        try QueueFixture.with { fixture in
            try WorkerProcessTests.createEventsTable(fixture)
            let worker = try Self.worker(fixture, workers: 1, pollSeconds: 1)
            // Idle first: the worker has looked at the queue and is asleep, waiting for a notification.
            try Processes.waitFor("the worker to start", timeout: 30) { worker.logText.contains("\"kinds\"") }
            usleep(500_000)
            let id = try #require(try Self.store(fixture.database, firm: fixture.firmA, count: 1, notify: false).first)
            try Processes.waitFor("the poll to find the event", timeout: 30) {
                try Self.event(fixture.database, id).bool("processed")
            }
            #expect(try WorkerProcessTests.events(fixture, id, "effect").count == 1)
            worker.terminate()
            try worker.waitForExit()
        }
    }

    @Test("a duplicate delivery through the webhooks route stores one event, processed once")
    func duplicateDeliveryIsProcessedOnce() throws {
        try WebhookFixture.with { fixture in
            try WorkerProcessTests.createEventsTable(fixture.database)
            let headers = fixture.headers(ticks: DotNetTicks.from(Date()))
            let answers = (0..<2).map { _ in
                WebhookFixture.status(fixture.deliver(headers: headers))
            }
            #expect(answers == ["accepted", "duplicate"])
            let events = try fixture.events()
            try #require(events.count == 1)
            let id = try events[0].uuid("id")
            let worker = try WorkerProcess(
                database: fixture.database, workers: 2, environment: ["JOB_TEST_WEBHOOK_EVENTS": "1"])
            try Processes.waitFor("the event to be processed", timeout: 30) {
                try Self.event(fixture.database, id).bool("processed")
            }
            worker.terminate()
            try worker.waitForExit()
            let effects = try fixture.database.admin().execute(
                "SELECT job_id, event FROM job_test_events ORDER BY at"
            ).rows.map { (try $0.uuid("job_id"), try $0.string("event")) }
            #expect(effects.map(\.0) == [id, id])
            #expect(effects.map(\.1) == ["started", "effect"])
            #expect(try fixture.events().count == 1)
        }
    }

    @Test(
        "deliveries through the route at seeded random moments around an idle worker's looks and sleeps are each processed without waiting for its poll"
    )
    func deliveriesNeverWaitForThePoll() throws {
        try WebhookFixture.with { fixture in
            try WorkerProcessTests.createEventsTable(fixture.database)
            // A poll far beyond the test's wait: an event whose wake-up was lost fails the test.
            let worker = try WorkerProcess(
                database: fixture.database, workers: 1, extraArguments: ["--poll-seconds", "3600"],
                environment: ["JOB_TEST_WEBHOOK_EVENTS": "1"])
            try Processes.waitFor("the worker to start", timeout: 30) { worker.logText.contains("\"kinds\"") }
            let seed = SeededGenerator.seed(environment: "WAKE_SEED", default: 0x5745_414B)
            var random = SeededGenerator(seed: seed)
            for _ in 0..<40 {
                let answer = WebhookFixture.status(
                    fixture.deliver(headers: fixture.headers(ticks: DotNetTicks.from(Date()))))
                #expect(answer == "accepted", "seed \(seed)")
                // Gaps from none (the worker still busy with the last event) to past its look and
                // into its sleep.
                usleep(UInt32.random(in: 0..<40_000, using: &random))
            }
            try Processes.waitFor("every event to be processed (seed \(seed))", timeout: 60) {
                try fixture.database.admin().execute(
                    "SELECT count(*)::int8 AS n FROM smokeball_webhook_events WHERE NOT processed"
                ).single().int("n") == 0
            }
            #expect(try fixture.events().count == 40)
            worker.terminate()
            try worker.waitForExit()
        }
    }

    @Test(
        "a failing event is retried after a growing back-off, then ends failed with its error, counted by status"
    )
    func failingEventRetriesThenFails() throws {
        try WebhookEventRig.with { rig in
            let (_, smokeballID, _) = try rig.syncedMatter()
            let mark = try rig.eventMark()
            try rig.setStatus(smokeballID, "Closed")
            let delivered = try #require(try rig.events(after: mark, types: ["matter.updated"]).first)
            let id = try rig.store(delivered)
            let admin = rig.flow.seed.connection
            try admin.execute("UPDATE smokeball_webhook_events SET max_attempts = 3 WHERE id = $1", [id])
            // Smokeball fails every read of the matter.
            try rig.flow.sandbox.addFault(["path_prefix": "/matters/", "status": 500])
            let backoff = JobBackoff(baseSeconds: 60, capSeconds: 3600)
            var delays: [Double] = []
            for attempt in 1...3 {
                let job = try #require(try rig.fixture.queue.claimWebhookEvent(leaseSeconds: 60))
                #expect(job.id == id && job.attempts == attempt && job.maxAttempts == 3)
                #expect(try rig.fixture.queue.claimWebhookEvent(leaseSeconds: 60) == nil, "leased: not claimed twice")
                let context = JobContext(
                    scope: JobScope(jobID: job.id, leaseID: job.leaseID, queue: job.queue), database: rig.fixture.work,
                    log: Logger(route: "test"))
                #expect(throws: (any Error).self) {
                    _ = try WebhookEventJob(tokens: rig.fixture.tokens).run(job, context)
                }
                let status = try rig.fixture.queue.fail(
                    job, error: JobError(.failed, "Smokeball answered 500"), backoff: backoff)
                let row = try admin.execute(
                    """
                    SELECT processed, status, error_message, lease_id IS NULL AS released,
                        extract(epoch FROM run_after - now())::float8 AS due_in
                    FROM smokeball_webhook_events WHERE id = $1
                    """, [id]
                ).single()
                #expect(try row.bool("released"))
                #expect(try row.optionalString("error_message") != nil)
                if attempt < 3 {
                    #expect(status == .pending)
                    #expect(try !row.bool("processed"))
                    // Not due again before the back-off: half to all of base × 2^(attempt - 1).
                    let delay = try row.double("due_in")
                    #expect(delay >= 30 * pow(2, Double(attempt - 1)) - 1, "attempt \(attempt)")
                    delays.append(delay)
                    #expect(try rig.fixture.queue.claimWebhookEvent(leaseSeconds: 60) == nil, "in back-off")
                    try admin.execute("UPDATE smokeball_webhook_events SET run_after = now() WHERE id = $1", [id])
                } else {
                    #expect(status == .dead)
                    #expect(try row.bool("processed") && row.optionalString("status") == "failed")
                }
            }
            print("failing event: back-off \(delays.map { String(format: "%.0f s", $0) })")
            #expect(try rig.fixture.queue.claimWebhookEvent(leaseSeconds: 60) == nil)

            let handler = StatusHandler(
                authenticator: Authenticator(secret: Array(TestEnvironment.jwtSecret.utf8)), database: rig.flow.database
            )
            let request = Request(
                method: "GET", path: "/api/v1/integrations/smokeball/status",
                headers: ["authorization": "Bearer " + TestEnvironment.token(subject: rig.flow.firm.admin.uuidString)],
                body: [], requestID: "test")
            let response = respond(to: request, with: handler, log: Logger(route: "status")).0
            #expect(response.status.code == 200)
            let counts = try #require(try StatusHandlerTests.json(response)["webhook_events"] as? [String: Any])
            #expect(counts["failed"] as? Int == 1)
            #expect(counts["pending"] as? Int == 0)
        }
    }
}
