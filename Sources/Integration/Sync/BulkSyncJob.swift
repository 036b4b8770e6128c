import Foundation
import PostgreSQL
import Smokeball

/// `sync_matters`: the listed matters, or every matter of the firm (oldest first), one after
/// the other in this one job on the background lane, with progress. A matter that fails is
/// recorded (its history row, its entry in the result) and counted, and the job goes on. A
/// re-run after a crash is cheap: linked, unchanged matters make no request.
public struct BulkSyncJob: JobHandler {
    public var kind: String { SyncJobs.syncMatters }

    let tokens: SmokeballTokenProvider
    let syncer: MatterSyncer

    public init(tokens: SmokeballTokenProvider, syncer: MatterSyncer) {
        self.tokens = tokens
        self.syncer = syncer
    }

    /// One matter's outcome: ids only.
    struct Outcome: Encodable, Sendable {
        let matterID: UUID
        /// `created`, `updated`, `unchanged` or `failed`.
        let status: String
        let error: String?

        enum CodingKeys: String, CodingKey {
            case matterID = "matter_id"
            case status, error
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(matterID.uuidString.lowercased(), forKey: .matterID)
            try container.encode(status, forKey: .status)
            try container.encode(error, forKey: .error)
        }
    }

    struct Result: Encodable, Sendable {
        let total: Int
        let done: Int
        let failed: Int
        let matters: [Outcome]
    }

    static let stopped = JobError(
        JobError.Code(rawValue: "stopped"), "the worker stopped before the end; the next attempt goes on",
        retryable: true)

    public func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        let payload = try job.payload(BulkSyncPayload.self)
        let ids = try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            if payload.all { return try Self.allMatters(connection) }
            // Duplicates once, in the order given.
            var seen = Set<UUID>()
            return (payload.matterIDs ?? []).filter { seen.insert($0).inserted }
        }
        var outcomes: [Outcome] = []
        var failed = 0
        context.report(JobProgress(done: 0, total: ids.count, failed: 0))
        for id in ids {
            if context.isStopping { throw Self.stopped }
            do {
                let result = try tokens.withAccess(context.scope) { client, access in
                    try syncer.sync(
                        matterID: id, scope: context.scope, database: context.database,
                        session: SmokeballSession(client: client, access: access, lane: .background), finalAttempt: true
                    )
                }
                outcomes.append(Outcome(matterID: id, status: result.matter.rawValue, error: nil))
            } catch {
                let readable = SyncFailure.jobError(error, doing: "syncing the matter")
                if let failure = readable as? JobError {
                    // Nothing else can go on without the firm's connection or the job's lease.
                    if failure.code == SyncFailure.notConnected || failure.code == .leaseLost { throw failure }
                    outcomes.append(Outcome(matterID: id, status: "failed", error: failure.message))
                } else {
                    outcomes.append(Outcome(matterID: id, status: "failed", error: "the sync failed"))
                }
                failed += 1
            }
            context.report(JobProgress(done: outcomes.count, total: ids.count, failed: failed))
        }
        return Result(total: ids.count, done: outcomes.count, failed: failed, matters: outcomes)
    }

    static func allMatters(_ connection: Connection) throws -> [UUID] {
        try connection.execute(
            "SELECT id FROM matters WHERE firm_id = app_current_firm() ORDER BY created_at, id"
        ).rows.map { try $0.uuid("id") }
    }
}
