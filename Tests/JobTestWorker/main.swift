import Foundation
import Integration
import PostgreSQL
import Smokeball

/// `test_record`: what the queue's process tests need a job to do. Every attempt writes a
/// `started` event, then (per the payload) blocks for good, sleeps, or fails; an attempt that
/// gets through writes one `effect` event. Events go to `job_test_events`, a table the test
/// creates, under the job's scope, so a write after the lease was lost fails.
struct RecordingHandler: JobHandler {
    struct Payload: Decodable {
        /// Attempts up to this number block until the process dies.
        var blockAttempts: Int?
        var sleepMilliseconds: Int?
        /// Attempts up to this number fail.
        var failAttempts: Int?
        var failRetryable: Bool?
        /// Reported as done of total just before an attempt that gets through returns.
        var progressTotal: Int?

        /// What the payload asks of this attempt: block for good, sleep, or fail.
        func behave(attempt: Int) throws {
            if attempt <= blockAttempts ?? 0 {
                while true { sleep(60) }
            }
            if let milliseconds = sleepMilliseconds { usleep(UInt32(milliseconds) * 1000) }
            if attempt <= failAttempts ?? 0 {
                throw JobError(
                    JobError.Code(rawValue: "test_failure"), "attempt \(attempt) failed on purpose",
                    retryable: failRetryable ?? true)
            }
        }

        enum CodingKeys: String, CodingKey {
            case blockAttempts = "block_attempts"
            case sleepMilliseconds = "sleep_ms"
            case failAttempts = "fail_attempts"
            case failRetryable = "fail_retryable"
            case progressTotal = "progress_total"
        }
    }

    struct Result: Encodable {
        let attempt: Int
    }

    let kind = "test_record"

    func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        let payload = try job.payload(Payload.self)
        try event("started", job, context)
        try payload.behave(attempt: job.attempts)
        try event("effect", job, context)
        if let total = payload.progressTotal { context.report(JobProgress(done: total, total: total)) }
        return Result(attempt: job.attempts)
    }

    private func event(_ name: String, _ job: Job, _ context: JobContext) throws {
        try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            try connection.execute(
                "INSERT INTO job_test_events (job_id, attempt, event, pid) VALUES ($1, $2, $3, $4)",
                [job.id, job.attempts, name, Int(getpid())])
        }
    }
}

/// `test_documents`: `MatterDocumentSync` for one linked matter, as the matter sync calls it, so
/// the documents tests can SIGKILL it mid-request. Registered only when the Smokeball settings
/// and the token key are in the environment (with `STORAGE_ROOT`, and `SYNC_SETTLE_SECONDS`
/// to shorten the settle time).
struct DocumentsHandler: JobHandler {
    struct Payload: Decodable {
        var matterID: UUID
        var smokeballMatterID: String

        enum CodingKeys: String, CodingKey {
            case matterID = "matter_id"
            case smokeballMatterID = "smokeball_matter_id"
        }
    }

    let kind = "test_documents"
    let tokens: SmokeballTokenProvider
    let documents: @Sendable (Database) -> MatterDocumentSync

    static func fromEnvironment(_ environment: [String: String]) throws -> DocumentsHandler? {
        guard environment["SMOKEBALL_CLIENT_ID"] != nil, let url = environment["DATABASE_URL"] else { return nil }
        let smokeball = try SmokeballConfiguration.fromEnvironment(environment)
        let database = Database(url: url, applicationName: "job-test-worker-smokeball")
        let tokens = SmokeballTokenProvider(
            database: database, vault: try TokenVault.fromEnvironment(environment), smokeball: smokeball,
            rateLimit: smokeball.credentials.map {
                PartnerRateLimit(database: database, configuration: smokeball, clientID: $0.clientID)
            })
        let store = try MatterDocumentSync.storeConfiguration(environment)
        let settle = try SyncRecovery.fromEnvironment(environment).settleSeconds
        return DocumentsHandler(tokens: tokens) { MatterDocumentSync(database: $0, store: store, settleTime: settle) }
    }

    func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        let payload = try job.payload(Payload.self)
        return try tokens.withAccess(context.scope) { client, access in
            try documents(context.database).sync(
                matterID: payload.matterID, smokeballMatterID: payload.smokeballMatterID, scope: context.scope,
                session: SmokeballSession(client: client, access: access, lane: .interactive))
        }
    }
}

/// `process_webhook_event` for the event queue's process tests (migration 045), registered only
/// with `JOB_TEST_WEBHOOK_EVENTS=1`: the worker then claims stored webhook events as it does in
/// production, and this handler, in place of `WebhookEventJob`'s Smokeball reads, writes a
/// `started` event, then per the event's payload blocks, sleeps or fails, and records the
/// outcome on the event with one `effect` event in the same transaction (as `WebhookEventJob`
/// records its outcome with its change).
struct RecordingEventHandler: JobHandler {
    let kind = "process_webhook_event"

    func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        let eventID = try job.payload([String: UUID].self)["event_id"] ?? job.id
        let payloadJSON = try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            try connection.execute(
                "INSERT INTO job_test_events (job_id, attempt, event, pid) VALUES ($1, $2, 'started', $3)",
                [eventID, job.attempts, Int(getpid())])
            return try connection.execute(
                "SELECT payload::text AS p FROM smokeball_webhook_events WHERE id = $1", [eventID]
            ).single().string("p")
        }
        let payload = try JSONDecoder().decode(RecordingHandler.Payload.self, from: Data(payloadJSON.utf8))
        try payload.behave(attempt: job.attempts)
        try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            try connection.execute(
                "INSERT INTO job_test_events (job_id, attempt, event, pid) VALUES ($1, $2, 'effect', $3)",
                [eventID, job.attempts, Int(getpid())])
            try connection.execute(
                """
                UPDATE smokeball_webhook_events SET processed = true, processed_at = now(), status = 'applied'
                WHERE firm_id = app_current_firm() AND id = $1
                """, [eventID])
        }
        return nil
    }
}

Worker.serve {
    let environment = ProcessInfo.processInfo.environment
    return [RecordingHandler()] + (environment["JOB_TEST_WEBHOOK_EVENTS"] == "1" ? [RecordingEventHandler()] : [])
        + [try DocumentsHandler.fromEnvironment(environment)].compactMap { $0 }
}
