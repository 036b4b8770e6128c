import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration
@testable import Smokeball

/// Until the documents part lands: a documents step that syncs nothing (the matter tests do not
/// cover documents).
struct NoDocuments: MatterDocumentsSyncing {
    func sync(matterID: UUID, smokeballMatterID: String, scope: any TenantScope, session: SmokeballSession) throws
        -> DocumentsSyncSummary
    {
        DocumentsSyncSummary(folderID: nil, uploaded: 0, skipped: 0, failed: 0)
    }
}

/// A connected firm (the sandbox behind nginx, a CaseHug database), its clients and matters,
/// and the sync's job handlers run in this process on jobs claimed from the real queue, as the
/// worker role.
struct MatterSyncFixture {
    let flow: ConnectionFlow
    let work: Database
    let queue: JobQueue
    let tokens: SmokeballTokenProvider
    var recovery = SyncRecovery(settleSeconds: 1)

    var seed: Seed { flow.seed }
    var sandbox: SmokeballSandbox { flow.sandbox }
    var firm: UUID { flow.firm.id }

    static func with(_ body: (inout MatterSyncFixture) throws -> Void) throws {
        try ConnectionFlow.with { flow in
            _ = try flow.connectFirm()
            let work = Database(url: flow.sandbox.database.workerURL)
            var fixture = MatterSyncFixture(
                flow: flow, work: work, queue: JobQueue(database: work),
                tokens: SmokeballTokenProvider(
                    database: work, vault: flow.vault, smokeball: flow.smokeball,
                    rateLimit: PartnerRateLimit(
                        database: work, configuration: flow.smokeball, clientID: SmokeballSandbox.clientID)))
            try body(&fixture)
        }
    }

    // MARK: CaseHug rows

    @discardableResult
    func client(
        firm: UUID? = nil, first: String = "Ada", last: String = "Lovelace", email: String? = nil,
        phone: String? = nil
    ) throws -> UUID {
        let id = UUID()
        let firm = firm ?? self.firm
        try seed.asFirm(firm) {
            try $0.execute(
                "INSERT INTO clients (id, firm_id, first_name, last_name, email, phone) VALUES ($1, $2, $3, $4, $5, $6)",
                [id, firm, first, last, email, phone])
        }
        return id
    }

    @discardableResult
    func matter(
        firm: UUID? = nil, client: UUID?, title: String = "Lovelace divorce", number: String? = "CH-0001",
        caseType: String = "divorce_standard", status: String = "active"
    ) throws -> UUID {
        let id = UUID()
        let firm = firm ?? self.firm
        try seed.asFirm(firm) {
            try $0.execute(
                """
                INSERT INTO matters (id, firm_id, client_id, title, case_number, case_type, status)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                """, [id, firm, client, title, number, caseType, status])
        }
        return id
    }

    func row(_ table: String, _ id: UUID) throws -> Row {
        try seed.connection.execute("SELECT * FROM \(table) WHERE id = $1", [id]).single()
    }

    /// History rows of a matter, oldest first: `action status external_id error`.
    func history(_ matterID: UUID) throws -> [String] {
        try seed.connection.execute(
            "SELECT action, status, error_message FROM integration_sync_logs WHERE matter_id = $1 ORDER BY created_at, id",
            [matterID]
        ).rows.map { "\(try $0.string("action")) \(try $0.string("status"))" }
    }

    // MARK: Handlers and jobs

    func syncer(documents: (any MatterDocumentsSyncing)? = NoDocuments()) -> MatterSyncer {
        MatterSyncer(
            contacts: ContactSync(recovery: recovery), matterTypes: MatterTypeResolver(database: work),
            matters: MatterSync(recovery: recovery, confirmFirstDelay: 0.05), documents: documents)
    }

    func handler(_ kind: String) -> any JobHandler {
        switch kind {
        case SyncJobs.syncMatter: SyncMatterJob(tokens: tokens, syncer: syncer())
        case SyncJobs.syncMatters: BulkSyncJob(tokens: tokens, syncer: syncer())
        case ImportMattersJob.kind: ImportMattersJob(tokens: tokens, matterTypes: MatterTypeResolver(database: work))
        default: PullMattersJob(tokens: tokens)
        }
    }

    /// Enqueues as `user` (the firm's admin by default) in a transaction of its own.
    func enqueue(
        _ kind: String, key: String?, payload: some Encodable, priority: Job.Priority = .interactive,
        as user: UUID? = nil, maxAttempts: Int = 5
    ) throws -> UUID {
        try flow.database.transaction { connection in
            _ = try Tenancy.enter(connection, userID: user ?? flow.firm.admin)
            return try JobQueue.enqueue(
                connection, kind: kind, key: key, payload: payload, priority: priority, maxAttempts: maxAttempts)
        }
    }

    struct Attempt {
        let jobID: UUID
        /// The result as JSON, when the attempt succeeded.
        let result: [String: Any]?
        let error: JobError?
        /// The job's status after the attempt.
        let status: Job.Status?
        let progress: JobProgress?
    }

    /// Runs `kind`'s next attempts while they wait out the settle time (an earlier create, whose
    /// answer was lost, may still land in Smokeball), and answers the first that does not wait,
    /// with how many did.
    func runPastSettleTime(_ kind: String) throws -> (attempt: Attempt, waits: Int) {
        var attempt = try runNext(kind)
        var waits = 0
        while attempt.error != nil {
            #expect(attempt.error?.message == "waiting for Smokeball to process an earlier request")
            waits += 1
            try #require(waits < 20)
            Thread.sleep(forTimeInterval: 0.3)
            attempt = try runNext(kind)
        }
        return (attempt, waits)
    }

    /// Claims the next due job of `kind` and runs it here as the worker would, recording the
    /// outcome (a retry is due at once).
    func runNext(_ kind: String) throws -> Attempt {
        let job = try #require(try queue.claim(kinds: [kind], leaseSeconds: 120))
        let context = JobContext(
            scope: JobScope(jobID: job.id, leaseID: job.leaseID), database: work, log: Logger(route: "test"))
        do {
            let value = try handler(kind).run(job, context)
            let json = try value.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
            #expect(try queue.finish(job, resultJSON: json))
            let object = json.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any]
            return Attempt(jobID: job.id, result: object, error: nil, status: .succeeded, progress: context.progress)
        } catch {
            let readable = JobError.readable(error)
            let status = try queue.fail(job, error: readable, backoff: JobBackoff(baseSeconds: 0, capSeconds: 0))
            return Attempt(jobID: job.id, result: nil, error: readable, status: status, progress: context.progress)
        }
    }

    /// `sync_matter` for one matter, enqueued and run once.
    func syncMatter(_ matterID: UUID, as user: UUID? = nil, maxAttempts: Int = 5) throws -> Attempt {
        _ = try enqueue(
            SyncJobs.syncMatter, key: SyncJobs.matterKey(matterID), payload: SyncMatterPayload(matterID: matterID),
            as: user, maxAttempts: maxAttempts)
        return try runNext(SyncJobs.syncMatter)
    }

    // MARK: The sandbox

    /// The id of the newest request-log row (requests after it are a test's own).
    func logMark() throws -> Int {
        try sandbox.requestLog().compactMap { $0["id"] as? Int }.max() ?? 0
    }

    /// API requests logged after `mark`: "METHOD path status".
    func requests(after mark: Int) throws -> [String] {
        try sandbox.requestLog().filter { ($0["id"] as? Int ?? 0) > mark }.map {
            "\($0["method"] as? String ?? "") \($0["path"] as? String ?? "") \($0["status"] as? Int ?? -1)"
        }
    }

    /// Creates a contact in the sandbox as another program would; its id.
    func sandboxContact(_ person: [String: Any], externalSystemID: String? = nil) throws -> String {
        var body: [String: Any] = ["person": person]
        if let externalSystemID { body["externalSystemId"] = externalSystemID }
        let data = try JSONSerialization.data(withJSONObject: body)
        return try flow.tokens.withAccess(UserScope(userID: flow.firm.admin)) { client, access in
            let answer = try client.call("POST", "/contacts", body: [UInt8](data), access: access)
            return try #require(SmokeballClient.acceptedLink(answer.response).id)
        }
    }

    /// Every contact of the firm's Smokeball account (through the API).
    func sandboxContacts() throws -> [SmokeballContact] {
        try flow.tokens.withAccess(UserScope(userID: flow.firm.admin)) { client, access in
            try client.all("/contacts", access: access)
        }
    }

    /// Every matter of the firm's Smokeball account (through the API).
    func sandboxMatters() throws -> [SmokeballMatter] {
        try flow.tokens.withAccess(UserScope(userID: flow.firm.admin)) { client, access in
            try client.all("/matters", access: access)
        }
    }

    func contacts(externalSystemID id: UUID) throws -> [SmokeballContact] {
        try sandboxContacts().filter { $0.externalSystemId == id.uuidString.lowercased() }
    }

    func matters(externalSystemID id: UUID) throws -> [SmokeballMatter] {
        try sandboxMatters().filter { $0.externalSystemId == id.uuidString.lowercased() }
    }
}
