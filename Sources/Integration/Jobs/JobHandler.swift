import FastCGI
import Foundation
import PostgreSQL

/// The work of one job kind. A `Sendable` struct, registered with the worker (`Worker.serve`),
/// that runs outside any transaction and opens its own short ones through `context.scope`
/// (`context.database.transaction { try context.scope.enter($0) ... }`, or
/// `SmokeballTokenProvider.withAccess(context.scope)`), so the job's lease is checked on each.
///
/// `run` returns the job's result (stored as JSON, read by the firm) or throws: a `JobError`
/// says whether another attempt could help; any other error is retried while attempts remain.
/// Whatever it throws is stored as the job's `last_error`, which people read: its description
/// must hold no PHI and no secrets (the project's errors already keep to that).
public protocol JobHandler: Sendable {
    /// The `jobs.kind` it runs (`^[a-z][a-z0-9_]{1,63}$`).
    var kind: String { get }
    func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)?
}

/// A job failure with a code and a readable message (no PHI, no secrets).
public struct JobError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The worker's lease on the job lapsed or passed to another worker: stop touching it.
        public static let leaseLost = Code(rawValue: "lease_lost")
        /// No handler for the job's kind is registered in this worker.
        public static let unknownKind = Code(rawValue: "unknown_kind")
        public static let invalidPayload = Code(rawValue: "invalid_payload")
        /// The handler stopped with an error that is not a `JobError`.
        public static let failed = Code(rawValue: "failed")
    }

    public let code: Code
    public let message: String
    /// Whether another attempt could succeed (a timeout, a 5xx); false for a job that is wrong
    /// in itself (a bad payload, a mapping to configure), which goes dead at once.
    public let retryable: Bool

    public init(_ code: Code, _ message: String, retryable: Bool = true) {
        self.code = code
        self.message = message
        self.retryable = retryable
    }

    public var description: String { "\(code): \(message)" }

    /// What is stored as `last_error` for any error a handler throws.
    static func readable(_ error: any Error) -> JobError {
        if let error = error as? JobError { return error }
        return JobError(.failed, String(describing: error))
    }
}

/// Who a job's database work is done for: the job's firm, for as long as this worker's lease on
/// the job is live (`app_enter_job`). Pass it wherever a `TenantScope` is taken.
public struct JobScope: TenantScope {
    public let jobID: UUID
    public let leaseID: UUID
    /// A job's lease, or a webhook event's (`app_enter_webhook_event`, migration 045).
    public let queue: Job.Queue

    public init(jobID: UUID, leaseID: UUID, queue: Job.Queue = .jobs) {
        self.jobID = jobID
        self.leaseID = leaseID
        self.queue = queue
    }

    /// Binds the transaction to the job's firm; throws `lease_lost` once the lease is not live.
    public func enter(_ connection: Connection) throws -> UUID {
        let function = queue == .jobs ? "app_enter_job" : "app_enter_webhook_event"
        let row = try connection.execute(
            "SELECT \(function)($1::uuid, $2::uuid) AS firm_id", [jobID, leaseID]
        ).single()
        guard let firm = try row.optionalUUID("firm_id") else {
            throw JobError(.leaseLost, "the worker's lease on the job is no longer live", retryable: true)
        }
        return firm
    }
}

/// What a handler gets besides its job: the job's scope, the worker's database (as the worker
/// role), the log, progress reporting, and whether the worker has been asked to stop.
public final class JobContext: @unchecked Sendable {
    public let scope: JobScope
    public let database: Database
    public let log: Logger
    private let lock = NSLock()
    private var progressValue: JobProgress?
    private var stopping = false

    init(scope: JobScope, database: Database, log: Logger) {
        self.scope = scope
        self.database = database
        self.log = log
    }

    /// Recorded with the next heartbeat (within a third of the lease).
    public func report(_ progress: JobProgress) {
        lock.lock()
        progressValue = progress
        lock.unlock()
    }

    /// Records `progress` now, in the caller's transaction on `connection` (bound to the job's
    /// firm): it is visible when that transaction commits, with the work it counts, rather than at
    /// the next heartbeat. Throws `lease_lost` (rolling the caller's work back) once the lease is
    /// not this worker's.
    public func report(_ progress: JobProgress, in connection: Connection) throws {
        guard scope.queue == .jobs else {
            // An event has no progress to show; its lease was checked when the transaction entered it.
            report(progress)
            return
        }
        let held = try connection.execute(
            "SELECT app_report_job_progress($1::uuid, $2::uuid, $3::int, $4::int, $5::int) AS held",
            [scope.jobID, scope.leaseID, progress.done, progress.total, progress.failed]
        ).single().bool("held")
        guard held else {
            throw JobError(.leaseLost, "the worker's lease on the job is no longer live", retryable: true)
        }
        report(progress)
    }

    /// True once the worker was asked to stop: a handler between steps may return early (it is
    /// released, not failed, if it has not finished when the grace period ends).
    public var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    var progress: JobProgress? {
        lock.lock()
        defer { lock.unlock() }
        return progressValue
    }

    func markStopping() {
        lock.lock()
        stopping = true
        lock.unlock()
    }
}
