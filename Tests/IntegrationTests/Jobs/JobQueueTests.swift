import Foundation
import Integration
import PostgreSQL
import TestSupport
import Testing

/// A migrated database with two firms, the routes' role (enqueue, read, retry) and the worker's
/// role (claim and report), for the queue's tests.
struct QueueFixture {
    let database: ServiceDatabase
    let firmA: Seed.FirmWithUsers
    let firmB: Seed.FirmWithUsers
    let app: Database
    let queue: JobQueue

    static func with<T>(_ body: (QueueFixture) throws -> T) throws -> T {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let fixture = QueueFixture(
                database: database, firmA: try seed.firmWithUsers("A"), firmB: try seed.firmWithUsers("B"),
                app: Database(url: database.appURL), queue: JobQueue(database: Database(url: database.workerURL)))
            return try body(fixture)
        }
    }

    /// Enqueues as `user` in a transaction of its own.
    @discardableResult
    func enqueue(
        as user: UUID, kind: String = "sync_matter", key: String? = "matter:1", payload: [String: Int] = [:],
        priority: Job.Priority = .automatic, runAfter: Date? = nil, maxAttempts: Int = 5
    ) throws -> UUID {
        try app.transaction { connection in
            _ = try Tenancy.enter(connection, userID: user)
            return try JobQueue.enqueue(
                connection, kind: kind, key: key, payload: payload, priority: priority, runAfter: runAfter,
                maxAttempts: maxAttempts)
        }
    }

    func read(as user: UUID, _ id: UUID) throws -> JobRecord? {
        try app.transaction { connection in
            _ = try Tenancy.enter(connection, userID: user)
            return try JobQueue.read(connection, jobID: id)
        }
    }

    /// A job's row as the superuser sees it, whatever its firm.
    func status(_ id: UUID) throws -> (status: String, attempts: Int64, runAfterSeconds: Double, error: String?) {
        let row = try database.admin().execute(
            """
            SELECT status, attempts, extract(epoch FROM run_after - clock_timestamp())::float8 AS due, last_error
            FROM jobs WHERE id = $1
            """, [id]
        ).single()
        return (
            try row.string("status"), try row.int("attempts"), try row.double("due"),
            try row.optionalString("last_error")
        )
    }

    /// Makes a pending job due now (instead of waiting out its back-off).
    func makeDue(_ id: UUID) throws {
        try database.admin().execute("UPDATE jobs SET run_after = now() WHERE id = $1 AND status = 'pending'", [id])
    }

    func count(_ condition: String = "true") throws -> Int64 {
        try database.admin().execute("SELECT count(*) AS n FROM jobs WHERE \(condition)").single().int("n")
    }
}

private struct Rollback: Error {}

@Suite struct JobQueueTests {
    static let kinds = ["sync_matter", "sync_matters"]

    @Test func aJobEnqueuedInATransactionThatRollsBackNeverExists() throws {
        try QueueFixture.with { fixture in
            #expect(throws: Rollback.self) {
                try fixture.app.transaction { connection in
                    _ = try Tenancy.enter(connection, userID: fixture.firmA.standard)
                    try JobQueue.enqueue(connection, kind: "sync_matter", key: "matter:1")
                    throw Rollback()
                }
            }
            #expect(try fixture.count() == 0)
            let kept = try fixture.enqueue(as: fixture.firmA.standard)
            let record = try #require(try fixture.read(as: fixture.firmA.standard, kept))
            #expect(record.status == .pending)
            #expect(record.createdBy == fixture.firmA.standard)
        }
    }

    @Test func aFirmCannotSeeOrRetryAnotherFirmsJobs() throws {
        try QueueFixture.with { fixture in
            let jobB = try fixture.enqueue(as: fixture.firmB.admin, maxAttempts: 1)
            let claimed = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30))
            #expect(try fixture.queue.fail(claimed, error: JobError(.failed, "boom"), backoff: .standard) == .dead)
            #expect(try fixture.read(as: fixture.firmA.admin, jobB) == nil)
            let retried = try fixture.app.transaction { connection in
                _ = try Tenancy.enter(connection, userID: fixture.firmA.admin)
                let visible = try connection.execute("SELECT count(*) AS n FROM jobs").single().int("n")
                #expect(visible == 0)
                return try JobQueue.retry(connection, jobID: jobB)
            }
            #expect(retried == nil)
            #expect(try fixture.status(jobB).status == "dead")
            // Its own firm sees and retries it.
            #expect(try fixture.read(as: fixture.firmB.standard, jobB)?.status == .dead)
        }
    }

    @Test func theRoutesRoleCannotClaimOrReportOnJobs() throws {
        try QueueFixture.with { fixture in
            let id = try fixture.enqueue(as: fixture.firmA.admin)
            let calls: [(String, [any SQLValueConvertible])] = [
                ("SELECT * FROM app_claim_job(30)", []),
                ("SELECT app_next_job_due()", []),
                ("SELECT app_heartbeat_job($1::uuid, $1::uuid, 30)", [id]),
                ("SELECT app_finish_job($1::uuid, $1::uuid)", [id]),
                ("SELECT app_fail_job($1::uuid, $1::uuid, 'x')", [id]),
                ("SELECT app_release_job($1::uuid, $1::uuid)", [id]),
                ("SELECT app_enter_job($1::uuid, $1::uuid)", [id]),
                ("UPDATE jobs SET status = 'running'", []),
            ]
            let app = try Connection(url: fixture.database.appURL)
            for (sql, values) in calls {
                do {
                    try app.transaction { connection in
                        _ = try Tenancy.enter(connection, userID: fixture.firmA.admin)
                        try connection.execute(sql, values)
                    }
                    Issue.record("the app role could run: \(sql)")
                } catch let error as DatabaseError {
                    #expect(error.isInsufficientPrivilege, "\(sql): \(error)")
                }
            }
            #expect(try fixture.status(id).status == "pending")
        }
    }

    @Test func aHundredEnqueuesOfOneKeyCoalesceIntoOnePendingJob() throws {
        try QueueFixture.with { fixture in
            var ids: Set<UUID> = []
            for index in 0..<100 {
                let priority: Job.Priority = index == 50 ? .interactive : .bulk
                ids.insert(try fixture.enqueue(as: fixture.firmA.standard, payload: ["n": index], priority: priority))
            }
            #expect(ids.count == 1)
            #expect(try fixture.count() == 1)
            let id = try #require(ids.first)
            let record = try #require(try fixture.read(as: fixture.firmA.standard, id))
            #expect(record.priority == .interactive)
            #expect(record.status == .pending)
            // The newest payload wins.
            let claimed = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30))
            #expect(claimed.payloadJSON.replacingOccurrences(of: " ", with: "") == #"{"n":99}"#)
            // Another firm's job with the same key is its own.
            try fixture.enqueue(as: fixture.firmB.standard)
            #expect(try fixture.count("status = 'pending'") == 1)
            #expect(try fixture.count() == 2)
        }
    }

    @Test func anEnqueueWhileTheJobRunsAddsOnePendingJobBesideIt() throws {
        try QueueFixture.with { fixture in
            let first = try fixture.enqueue(as: fixture.firmA.standard)
            let running = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30))
            #expect(running.id == first)
            let second = try fixture.enqueue(as: fixture.firmA.standard)
            let third = try fixture.enqueue(as: fixture.firmA.standard)
            #expect(second != first)
            #expect(third == second)
            #expect(try fixture.count("status = 'running'") == 1)
            #expect(try fixture.count("status = 'pending'") == 1)
            // When the running one fails meanwhile, the pending one does the work: no second pending job.
            #expect(try fixture.queue.fail(running, error: JobError(.failed, "x"), backoff: .standard) == .superseded)
            #expect(try fixture.count("status = 'pending'") == 1)
            #expect(try fixture.status(first).status == "superseded")
        }
    }

    @Test func interactiveJobsAreClaimedBeforeAutomaticOnesAndThoseBeforeBulk() throws {
        try QueueFixture.with { fixture in
            let user = fixture.firmA.standard
            let bulk = try fixture.enqueue(as: user, key: "bulk", priority: .bulk)
            let automatic = try fixture.enqueue(as: user, key: "automatic", priority: .automatic)
            let later = try fixture.enqueue(
                as: user, key: "later", priority: .interactive, runAfter: Date().addingTimeInterval(3600))
            let interactive = try fixture.enqueue(
                as: fixture.firmB.standard, key: "interactive", priority: .interactive)
            var order: [UUID] = []
            while let job = try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30) { order.append(job.id) }
            #expect(order == [interactive, automatic, bulk])
            #expect(try fixture.status(later).status == "pending")
            // The worker sleeps until then (or a lease ends): the next due time is the later job's or a lease's.
            let due = try #require(try fixture.queue.nextDue(kinds: Self.kinds))
            #expect(due > 0 && due <= 3600)
            // A worker that runs other kinds only claims nothing.
            #expect(try fixture.queue.claim(kinds: ["other_kind"], leaseSeconds: 30) == nil)
        }
    }

    @Test func failuresAreRetriedWithGrowingJitteredDelaysThenTheJobIsDeadAndRetryable() throws {
        try QueueFixture.with { fixture in
            let id = try fixture.enqueue(as: fixture.firmA.admin, maxAttempts: 3)
            let backoff = JobBackoff(baseSeconds: 100, capSeconds: 1000)
            for attempt in 1...3 {
                let job = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30))
                #expect(job.id == id)
                #expect(job.attempts == attempt)
                let error = JobError(JobError.Code(rawValue: "smokeball_unavailable"), "Smokeball answered 503")
                let status = try fixture.queue.fail(job, error: error, backoff: backoff)
                let row = try fixture.status(id)
                if attempt < 3 {
                    #expect(status == .pending)
                    // Between half and all of base × 2^(attempt-1).
                    let ceiling = 100 * pow(2, Double(attempt - 1))
                    #expect(row.runAfterSeconds > ceiling / 2 - 1 && row.runAfterSeconds <= ceiling)
                    #expect(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30) == nil)
                    try fixture.makeDue(id)
                } else {
                    #expect(status == .dead)
                }
            }
            let dead = try #require(try fixture.read(as: fixture.firmA.standard, id))
            #expect(dead.status == .dead)
            #expect(dead.lastError == "smokeball_unavailable: Smokeball answered 503")
            #expect(dead.finishedAt != nil)
            let retried = try fixture.app.transaction { connection in
                _ = try Tenancy.enter(connection, userID: fixture.firmA.admin)
                return try JobQueue.retry(connection, jobID: id)
            }
            #expect(retried == id)
            let again = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30))
            #expect(again.id == id)
            #expect(again.attempts == 1)
            #expect(try fixture.queue.finish(again, resultJSON: #"{"ok":true}"#))
            let done = try #require(try fixture.read(as: fixture.firmA.standard, id))
            #expect(done.status == .succeeded)
            #expect(done.lastError == nil)
            #expect(done.resultJSON?.replacingOccurrences(of: " ", with: "") == #"{"ok":true}"#)
        }
    }

    @Test func anErrorThatAnotherAttemptCannotFixKillsTheJobAtOnce() throws {
        try QueueFixture.with { fixture in
            let id = try fixture.enqueue(as: fixture.firmA.admin)
            let job = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30))
            let error = JobError(.invalidPayload, "configure a custom mapping", retryable: false)
            #expect(try fixture.queue.fail(job, error: error, backoff: .standard) == .dead)
            #expect(try fixture.status(id).attempts == 1)
        }
    }

    @Test func aLapsedLeaseIsRescuedAsANewAttemptAndTheOldHolderCanNoLongerReport() throws {
        try QueueFixture.with { fixture in
            let id = try fixture.enqueue(as: fixture.firmA.admin)
            let first = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 0.3))
            #expect(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30) == nil)
            var rescued: Job?
            try Processes.waitFor("the lease to lapse") {
                rescued = try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30)
                return rescued != nil
            }
            let second = try #require(rescued)
            #expect(second.id == id)
            #expect(second.attempts == 2)
            #expect(second.leaseID != first.leaseID)
            #expect(try fixture.queue.heartbeat(first, leaseSeconds: 30, progress: nil) == false)
            #expect(try fixture.queue.finish(first, resultJSON: nil) == false)
            #expect(try fixture.queue.release(first) == nil)
            #expect(throws: JobError.self) {
                try fixture.queue.database.transaction {
                    try JobScope(jobID: first.id, leaseID: first.leaseID).enter($0)
                }
            }
            #expect(try fixture.queue.heartbeat(second, leaseSeconds: 30, progress: JobProgress(done: 2, total: 5)))
            #expect(try fixture.read(as: fixture.firmA.admin, id)?.progress == JobProgress(done: 2, total: 5))
            #expect(try fixture.queue.finish(second, resultJSON: nil))
            #expect(try fixture.status(id).status == "succeeded")
        }
    }

    @Test func aJobWhoseEveryAttemptLostItsWorkerEndsDead() throws {
        try QueueFixture.with { fixture in
            let id = try fixture.enqueue(as: fixture.firmA.admin, maxAttempts: 1)
            _ = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 0.2))
            try Processes.waitFor("the lease to lapse") { try fixture.status(id).runAfterSeconds < 0 }
            #expect(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30) == nil)
            let row = try fixture.status(id)
            #expect(row.status == "dead")
            #expect(row.error == "the worker running it stopped responding on every attempt")
        }
    }

    @Test func aReleasedJobIsPendingAgainWithoutSpendingAnAttempt() throws {
        try QueueFixture.with { fixture in
            let id = try fixture.enqueue(as: fixture.firmA.admin)
            let job = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30))
            #expect(try fixture.status(id).attempts == 1)
            #expect(try fixture.queue.release(job) == .pending)
            let row = try fixture.status(id)
            #expect(row.status == "pending")
            #expect(row.attempts == 0)
            #expect(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30)?.attempts == 1)
        }
    }

    @Test func aJobScopeBindsTransactionsToTheJobsFirmOnlyWhileTheLeaseIsLive() throws {
        try QueueFixture.with { fixture in
            try fixture.enqueue(as: fixture.firmB.admin)
            let job = try #require(try fixture.queue.claim(kinds: Self.kinds, leaseSeconds: 30))
            let scope = JobScope(jobID: job.id, leaseID: job.leaseID)
            let firms = try fixture.queue.database.transaction { connection in
                #expect(try scope.enter(connection) == fixture.firmB.id)
                return try connection.execute("SELECT id FROM firms").rows.map { try $0.uuid("id") }
            }
            #expect(firms == [fixture.firmB.id])
            // Jobs can enqueue follow-up jobs for their firm.
            let followUp = try fixture.queue.database.transaction { connection in
                _ = try scope.enter(connection)
                return try JobQueue.enqueue(connection, kind: "sync_matter", key: "matter:2")
            }
            #expect(try fixture.read(as: fixture.firmB.admin, followUp)?.status == .pending)
            #expect(try fixture.queue.finish(job, resultJSON: nil))
            #expect(throws: JobError.self) { try fixture.queue.database.transaction { try scope.enter($0) } }
        }
    }

    @Test func everyEnqueueNotifiesTheQueuesChannelAtCommit() throws {
        try QueueFixture.with { fixture in
            let listener = try Connection(url: fixture.database.workerURL)
            try listener.listen(JobQueue.channel)
            try fixture.enqueue(as: fixture.firmA.standard)
            #expect(try listener.waitForNotification(timeout: 10)?.channel == JobQueue.channel)
        }
    }
}
