import Foundation
import PostgreSQL

/// The job queue (migration 030). Enqueueing, retrying and reading happen in the caller's own
/// transaction, bound to its firm (`Tenancy.enter`, a `JobScope`, ...): `enqueue` inside the
/// transaction that makes the change, so the job exists exactly when the change does. Claiming
/// and reporting are the worker's (`casehug_worker` role): each is one short transaction.
public struct JobQueue: Sendable {
    /// The channel every enqueue and requeue notifies.
    public static let channel = "casehug_jobs"

    /// The worker's database (the `casehug_worker` role).
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    // MARK: In the caller's transaction

    /// Enqueues a job for the transaction's firm and returns the id of the pending job that will
    /// run it: a new one, or the pending job with the same `kind` and `key`, which absorbs this
    /// enqueue (the more urgent priority, the earlier `runAfter` and this payload win).
    @discardableResult
    public static func enqueue(
        _ connection: Connection, kind: String, key: String?, payload: some Encodable = [String: String](),
        priority: Job.Priority = .automatic, runAfter: Date? = nil, maxAttempts: Int = 5
    ) throws -> UUID {
        let (call, parameters) = try enqueueCall(
            from: 1, kind: kind, key: key, payload: payload, priority: priority, runAfter: runAfter,
            maxAttempts: maxAttempts, notify: true)
        return try connection.execute("SELECT \(call) AS id", parameters).single().uuid("id")
    }

    /// The `app_enqueue_job` call of `enqueue`, its parameters numbered from `$first`, for a
    /// statement that enqueues as part of a larger one (a data-modifying CTE in a pipeline).
    /// `notify: false` leaves waking the workers to the caller, after its COMMIT (a `pg_notify`
    /// of `channel`): PostgreSQL holds a lock from a notifying transaction's commit until its WAL
    /// flush, which keeps concurrent enqueuers from sharing a flush (migration 040).
    public static func enqueueCall(
        from first: Int, kind: String, key: String?, payload: some Encodable, priority: Job.Priority = .automatic,
        runAfter: Date? = nil, maxAttempts: Int = 5, notify: Bool
    ) throws -> (sql: String, parameters: [any SQLValueConvertible]) {
        let json = String(decoding: try JSONEncoder().encode(payload), as: UTF8.self)
        let n = (first..<first + 7).map { "$\($0)" }
        return (
            "app_enqueue_job(\(n[0]), \(n[1]), \(n[2])::jsonb, \(n[3])::smallint, \(n[4])::timestamptz, "
                + "\(n[5])::integer, \(n[6])::boolean)",
            [kind, key, SQLValue.json(json), priority.rawValue, runAfter, maxAttempts, notify]
        )
    }

    /// The advisory lock a worker holds, shared, while it waits for webhook events
    /// (`waitingForWebhookEvents`). A constant of this project's: "CHWE" (CaseHug webhook events).
    static let webhookEventWaitersLock: Int64 = 0x4348_5745

    /// Wakes the workers waiting for webhook events, sent after the COMMIT that stored one: it
    /// notifies only while a worker waits. A notification is not free: PostgreSQL serialises
    /// notifying transactions under one lock and signals every listener, and under load (every
    /// worker busy, so none needs waking) it cost about a sixth of `scripts/bench webhooks`. The
    /// exclusive try fails while a waiter holds the lock shared (or, for a moment, while another
    /// delivery's try holds it: one notification too many, never one too few).
    ///
    /// Why no event is left waiting: a worker takes the lock before it looks for due events. If
    /// this try succeeded, no worker held the lock when it ran, after this event's COMMIT; so any
    /// worker that waits took the lock later, and its look finds the event.
    public static var wakeWebhookEventWorkersStatement: Statement {
        Statement(
            "SELECT pg_notify($1, '') WHERE NOT pg_try_advisory_xact_lock($2::bigint)",
            [channel, webhookEventWaitersLock])
    }

    /// Runs `body` (a worker's look for due work, then its wait) holding the waiters' lock shared
    /// on `listener`, the worker's listening session: deliveries stored meanwhile notify
    /// (`wakeWebhookEventWorkersStatement`). A session that ends releases it with everything else.
    public static func waitingForWebhookEvents<T>(_ listener: Connection, _ body: () throws -> T) throws -> T {
        _ = try listener.execute("SELECT pg_advisory_lock_shared($1::bigint)", [webhookEventWaitersLock])
        // Notifications libpq read while the lock was taken: what they announced is committed,
        // so the look that follows finds it.
        _ = try listener.notifications()
        let result = try body()
        _ = try listener.execute("SELECT pg_advisory_unlock_shared($1::bigint)", [webhookEventWaitersLock])
        return result
    }

    /// Makes a dead job of the transaction's firm pending again with its attempts reset. Returns
    /// the id of the pending job that will do the work (this one, or one that superseded it);
    /// nil for an unknown job, another firm's, or one that is not dead.
    public static func retry(_ connection: Connection, jobID: UUID) throws -> UUID? {
        try connection.execute("SELECT app_retry_job($1::uuid) AS id", [jobID]).single().optionalUUID("id")
    }

    /// One job of the transaction's firm; nil when there is none with this id (or it is another firm's).
    public static func read(_ connection: Connection, jobID: UUID) throws -> JobRecord? {
        try connection.execute(
            "SELECT \(JobRecord.columns) FROM jobs WHERE id = $1 AND firm_id = app_current_firm()", [jobID]
        ).first.map(JobRecord.init(row:))
    }

    // MARK: The worker's

    /// Claims the most urgent due job of `kinds` (or a running one whose lease lapsed) with a
    /// lease of `leaseSeconds`; nil when none is due.
    public func claim(kinds: [String], leaseSeconds: Double) throws -> Job? {
        try database.transaction { connection in
            try connection.execute(
                """
                SELECT id, firm_id, kind, key, priority, payload, attempts, max_attempts, lease_id, lease_until,
                       created_by, created_at
                FROM app_claim_job($1::float8, string_to_array($2, ','))
                """,
                [leaseSeconds, try Self.kindList(kinds)]
            ).first.map { try Job(row: $0) }
        }
    }

    /// Claims the stored webhook event due first (migration 045: an event is its own work item,
    /// run by the `process_webhook_event` handler as a job), or one whose lease lapsed; nil when
    /// none is due.
    public func claimWebhookEvent(leaseSeconds: Double) throws -> Job? {
        try database.transaction { connection in
            try connection.execute(
                """
                SELECT id, firm_id, kind, key, priority, payload, attempts, max_attempts, lease_id, lease_until,
                       created_by, created_at
                FROM app_claim_webhook_event($1::float8)
                """,
                [leaseSeconds]
            ).first.map { try Job(row: $0, queue: .webhookEvents) }
        }
    }

    /// When the next unprocessed webhook event falls due, as a delay from now; nil when none is waiting.
    public func nextWebhookEventDue() throws -> TimeInterval? {
        let row = try database.transaction { connection in
            try connection.execute(
                "SELECT extract(epoch FROM app_next_webhook_event_due() - clock_timestamp())::float8 AS s"
            ).single()
        }
        return try row.isNull("s") ? nil : try row.double("s")
    }

    /// When the next job of `kinds` falls due (a pending job's `run_after`, a running one's lease
    /// end), as a delay from now; nil when there is no such job.
    public func nextDue(kinds: [String]) throws -> TimeInterval? {
        let row = try database.transaction { connection in
            try connection.execute(
                "SELECT extract(epoch FROM app_next_job_due(string_to_array($1, ',')) - clock_timestamp())::float8 AS s",
                [try Self.kindList(kinds)]
            ).single()
        }
        return try row.isNull("s") ? nil : try row.double("s")
    }

    /// Extends the lease and records `progress`. False when the lease is no longer this worker's.
    public func heartbeat(_ job: Job, leaseSeconds: Double, progress: JobProgress?) throws -> Bool {
        try database.transaction { connection in
            try Self.heartbeat(connection, job, leaseSeconds: leaseSeconds, progress: progress)
        }
    }

    static func heartbeat(_ connection: Connection, _ job: Job, leaseSeconds: Double, progress: JobProgress?) throws
        -> Bool
    {
        if job.queue == .webhookEvents {
            // An event reports no progress: only its lease is extended.
            return try connection.execute(
                "SELECT app_heartbeat_webhook_event($1::uuid, $2::uuid, $3::float8) AS held",
                [job.id, job.leaseID, leaseSeconds]
            ).single().bool("held")
        }
        return try connection.execute(
            "SELECT app_heartbeat_job($1::uuid, $2::uuid, $3::float8, $4::int, $5::int, $6::int) AS held",
            [job.id, job.leaseID, leaseSeconds, progress?.done, progress?.total, progress?.failed]
        ).single().bool("held")
    }

    /// Records success with the result's JSON, and the handler's last progress with it (a job
    /// that ends between heartbeats would otherwise keep the figures of the one before). False
    /// when the lease is no longer this worker's.
    public func finish(_ job: Job, resultJSON: String?, progress: JobProgress? = nil) throws -> Bool {
        try database.transaction { connection in
            if job.queue == .webhookEvents {
                // The handler committed the event's outcome with its change: the lease ends here.
                return try connection.execute(
                    "SELECT app_finish_webhook_event($1::uuid, $2::uuid) AS held", [job.id, job.leaseID]
                ).single().bool("held")
            }
            if let progress {
                guard try Self.heartbeat(connection, job, leaseSeconds: 1, progress: progress) else { return false }
            }
            return try connection.execute(
                "SELECT app_finish_job($1::uuid, $2::uuid, $3::jsonb) AS held",
                [job.id, job.leaseID, resultJSON.map(SQLValue.json) ?? .null]
            ).single().bool("held")
        }
    }

    /// Records a failure: back to pending after a jittered exponential back-off while attempts
    /// remain and the error is retryable, else dead. Returns the job's new status; nil when the
    /// lease is no longer this worker's.
    public func fail(_ job: Job, error: JobError, backoff: JobBackoff, progress: JobProgress? = nil) throws
        -> Job.Status?
    {
        try database.transaction { connection in
            let function: String
            if job.queue == .webhookEvents {
                function = "app_fail_webhook_event"
            } else {
                function = "app_fail_job"
                if let progress {
                    guard try Self.heartbeat(connection, job, leaseSeconds: 1, progress: progress) else { return nil }
                }
            }
            return try connection.execute(
                "SELECT \(function)($1::uuid, $2::uuid, $3, $4, $5::float8, $6::float8) AS status",
                [job.id, job.leaseID, error.description, error.retryable, backoff.baseSeconds, backoff.capSeconds]
            ).single().optionalString("status").flatMap(Job.Status.init(rawValue:))
        }
    }

    /// Gives the job back to the queue without spending an attempt. Returns its new status;
    /// nil when the lease is no longer this worker's.
    public func release(_ job: Job) throws -> Job.Status? {
        try database.transaction { connection in
            try connection.execute(
                "SELECT \(job.queue == .jobs ? "app_release_job" : "app_release_webhook_event")($1::uuid, $2::uuid) AS status",
                [job.id, job.leaseID]
            ).single().optionalString("status").flatMap(Job.Status.init(rawValue:))
        }
    }

    /// Kinds travel as one comma-separated text (no array parameters here); each is checked
    /// against the kind pattern, so none can contain a comma.
    static func kindList(_ kinds: [String]) throws -> String {
        for kind in kinds where kind.range(of: "^[a-z][a-z0-9_]{1,63}$", options: .regularExpression) == nil {
            throw JobError(.unknownKind, "a job kind must match ^[a-z][a-z0-9_]{1,63}$", retryable: false)
        }
        return kinds.joined(separator: ",")
    }
}

/// The retry delay after the n-th failed attempt: `baseSeconds` doubled per attempt spent, at
/// most `capSeconds`, then a random point between half and all of it (so retries of jobs that
/// failed together spread out).
public struct JobBackoff: Sendable, Equatable {
    public var baseSeconds: Double
    public var capSeconds: Double

    public init(baseSeconds: Double = 5, capSeconds: Double = 3600) {
        self.baseSeconds = baseSeconds
        self.capSeconds = capSeconds
    }

    public static let standard = JobBackoff()
}
