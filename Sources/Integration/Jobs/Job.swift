import Foundation
import PostgreSQL

/// A job as its worker sees it after claiming it (migration 030): what to do, for which firm,
/// and the lease under which the worker may report on it.
public struct Job: Sendable, Equatable {
    /// Lower is more urgent; a worker always claims the most urgent due job first.
    public enum Priority: Int, Sendable, Comparable, CaseIterable {
        /// A user clicked and is waiting.
        case interactive = 0
        /// A change in CaseHug caused it (a trigger).
        case automatic = 1
        /// Many matters at once.
        case bulk = 2

        public static func < (lhs: Priority, rhs: Priority) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    public enum Status: String, Sendable, Codable {
        case pending, running, succeeded, dead
        /// Would have become pending again while another pending job held its key: that one
        /// does the same work.
        case superseded
    }

    /// Where a claimed piece of work lives: a row of `jobs`, or a stored webhook event, which is
    /// its own work item (migration 045: the worker claims unprocessed events directly).
    public enum Queue: Sendable, Equatable {
        case jobs, webhookEvents
    }

    /// The row this work is: a job's id, or the event's.
    public let id: UUID
    public let queue: Queue
    public let firmID: UUID
    public let kind: String
    /// The coalescing key; nil never coalesces.
    public let key: String?
    public let priority: Priority
    /// The payload's JSON text (decode with `payload(_:)`).
    public let payloadJSON: String
    /// Attempts including this one.
    public let attempts: Int
    public let maxAttempts: Int
    public let leaseID: UUID
    public let leaseUntil: Date
    public let createdBy: UUID?
    public let createdAt: Date

    public func payload<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(payloadJSON.utf8))
        } catch {
            throw JobError(.invalidPayload, "the job's payload does not fit kind \(kind)", retryable: false)
        }
    }

    init(row: Row, queue: Queue = .jobs) throws {
        id = try row.uuid("id")
        self.queue = queue
        firmID = try row.uuid("firm_id")
        kind = try row.string("kind")
        key = try row.optionalString("key")
        priority = Priority(rawValue: Int(try row.int("priority"))) ?? .bulk
        payloadJSON = try row.jsonText("payload")
        attempts = Int(try row.int("attempts"))
        maxAttempts = Int(try row.int("max_attempts"))
        leaseID = try row.uuid("lease_id")
        leaseUntil = try row.date("lease_until")
        createdBy = try row.optionalUUID("created_by")
        createdAt = try row.date("created_at")
    }
}

/// How far a job has got (`done` of `total`, `failed` of those), as its handler reports it.
public struct JobProgress: Sendable, Equatable, Codable {
    public var done: Int
    public var total: Int?
    public var failed: Int

    public init(done: Int = 0, total: Int? = nil, failed: Int = 0) {
        self.done = done
        self.total = total
        self.failed = failed
    }
}

/// A job as its firm sees it (the sync route's `GET ?job_id=`, tests).
public struct JobRecord: Sendable, Equatable {
    public let id: UUID
    public let kind: String
    public let key: String?
    public let priority: Job.Priority
    public let status: Job.Status
    public let progress: JobProgress
    public let attempts: Int
    public let maxAttempts: Int
    /// Pending: not before this. Running: when the lease ends.
    public let runAfter: Date
    public let lastError: String?
    /// The handler's result as JSON text, once succeeded.
    public let resultJSON: String?
    public let createdBy: UUID?
    public let createdAt: Date
    public let updatedAt: Date
    /// When its current run of attempts began (migration 034): nil until first claimed.
    public let startedAt: Date?
    public let finishedAt: Date?

    static let columns = """
        id, kind, key, priority, status, progress_done, progress_total, progress_failed, attempts, max_attempts,
        run_after, last_error, result, created_by, created_at, updated_at, started_at, finished_at
        """

    init(row: Row) throws {
        id = try row.uuid("id")
        kind = try row.string("kind")
        key = try row.optionalString("key")
        priority = Job.Priority(rawValue: Int(try row.int("priority"))) ?? .bulk
        status = Job.Status(rawValue: try row.string("status")) ?? .dead
        progress = JobProgress(
            done: Int(try row.int("progress_done")), total: try row.optionalInt("progress_total").map { Int($0) },
            failed: Int(try row.int("progress_failed")))
        attempts = Int(try row.int("attempts"))
        maxAttempts = Int(try row.int("max_attempts"))
        runAfter = try row.date("run_after")
        lastError = try row.optionalString("last_error")
        resultJSON = try row.isNull("result") ? nil : try row.jsonText("result")
        createdBy = try row.optionalUUID("created_by")
        createdAt = try row.date("created_at")
        updatedAt = try row.date("updated_at")
        startedAt = try row.optionalDate("started_at")
        finishedAt = try row.optionalDate("finished_at")
    }
}
