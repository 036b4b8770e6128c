import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import Smokeball

/// `/api/v1/integrations/smokeball/sync`: asks for a sync, follows it, reads the sync history.
///
/// - `POST {"matter_id", "action": "sync_matter"}` (any firm user), `{"action": "sync_matters",
///   "matter_ids": [...]}` and `{"action": "sync_all"}` (firm admins), `{"action": "pull_matters"}`
///   (any firm user), `{"action": "retry", "job_id"}` (a failed job again, with the permission
///   of the action that starts it), `{"action": "ensure_webhooks"}` (firm admins): enqueues the
///   job in the request's own transaction, after every check, and answers 202 `{job_id,
///   status}`. A worker does the work.
/// - `GET ?job_id=`: the job's status, progress, estimated seconds left and result.
/// - `GET [?matter_id=][&limit=][&cursor=]`: the matter's (or the firm's) sync history, newest
///   first, in pages joined by an opaque cursor.
///
/// Bearer token only, no session cookie: a cookie would let another site's form post here.
public struct SyncHandler: DatabaseHandler {
    public let route = "sync"
    public let database: Database
    let authenticator: Authenticator
    /// False when the server has no Smokeball credentials: a sync request then answers 503 (no
    /// worker could carry it out); jobs and history can still be read.
    let smokeballConfigured: Bool

    public init(authenticator: Authenticator, database: Database, smokeballConfigured: Bool) {
        self.authenticator = authenticator
        self.database = database
        self.smokeballConfigured = smokeballConfigured
    }

    /// Half a set of Smokeball credentials stops the route at start, as it stops the others.
    public init(configuration: Configuration) throws {
        self.init(
            authenticator: Authenticator(configuration: configuration),
            database: Database(
                url: configuration.databaseURL, applicationName: "casehug-sync",
                options: configuration.databaseOptions),
            smokeballConfigured: try SmokeballConfiguration.fromEnvironment().isConfigured)
    }

    public func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        switch request.method {
        case "POST":
            return try enqueue(request, context)
        case "GET", "HEAD":
            let userID = try authenticator.userID(for: request)
            if let jobID = Self.parameter(request, "job_id") {
                for other in ["matter_id", "limit", "cursor"] where Self.parameter(request, other) != nil {
                    throw HTTPError(
                        .badRequest, code: "invalid_query", "job_id cannot be combined with matter_id, limit or cursor")
                }
                return try job(jobID, userID: userID)
            }
            return try history(request, userID: userID)
        default:
            throw HTTPError.methodNotAllowed(allowed: ["GET", "HEAD", "POST"])
        }
    }

    /// A query parameter's first value; an empty one counts as absent (`?matter_id=`).
    static func parameter(_ request: Request, _ name: String) -> String? {
        request.queryValues(name).first.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// What the JSON answers hold for an absent value: `null`, never a missing key.
    static func orNull(_ value: Any?) -> Any { value ?? NSNull() }

    static func notFound(_ message: String) -> HTTPError {
        HTTPError(.notFound, code: "not_found", message)
    }

    // MARK: POST: enqueue

    /// 202 `{job_id, status}`.
    struct EnqueueAnswer: Encodable {
        let jobID: UUID
        let status: Job.Status

        enum CodingKeys: String, CodingKey {
            case jobID = "job_id"
            case status
        }
    }

    func enqueue(_ request: Request, _ context: RequestContext) throws -> Response {
        let userID = try authenticator.userID(for: request)
        guard smokeballConfigured else { throw ConnectHandler.notConfigured }
        // The body's shape is checked before any database work.
        let wanted = try SyncRequest(body: try request.jsonObject())
        // Every check, then the enqueue, in one transaction: a refused request leaves no job, and
        // the job's notification goes out only when it commits.
        let (firmID, job) = try database.transaction { connection in
            let caller = try Tenancy.enter(connection, userID: userID)
            if let refusal = wanted.firmAdminsOnly, !caller.isFirmAdmin {
                throw HTTPError(.forbidden, code: "forbidden", refusal)
            }
            try Self.requireConnected(connection)
            try wanted.requireMatters(connection)
            let jobID = try wanted.enqueue(connection, isFirmAdmin: caller.isFirmAdmin)
            guard let job = try JobQueue.read(connection, jobID: jobID) else {
                throw HTTPError.internalError(logDetail: "the enqueued job is not readable")
            }
            return (caller.firmID, job)
        }
        context.log.info(
            "sync_requested",
            [
                "firm_id": firmID.uuidString.lowercased(), "kind": job.kind, "job_id": job.id.uuidString.lowercased(),
            ])
        return try Response.json(encoding: EnqueueAnswer(jobID: job.id, status: job.status), status: .accepted)
    }

    /// 409 `not_connected` unless the firm's Smokeball connection is usable as the status route
    /// reports it: active, with an access token, and not waiting for a reconnect.
    static func requireConnected(_ connection: Connection) throws {
        let row = try connection.execute(
            """
            SELECT is_active AND access_token IS NOT NULL AS connected,
                   coalesce(needs_reconnect_reason,
                       CASE WHEN refresh_token_expires_at <= now() THEN 'refresh_token_expired' END) AS reconnect_reason
            FROM firm_integrations WHERE firm_id = app_current_firm() AND platform = $1
            """, [StatusHandler.platform]
        ).first
        guard let row, try row.bool("connected") else {
            throw SmokeballTokenError(.notConnected).httpError
        }
        if let reason = try row.optionalString("reconnect_reason") {
            let reconnect = SmokeballTokenError(.needsReconnect, reason: reason).httpError
            throw HTTPError(.conflict, code: SmokeballTokenError.Code.notConnected.rawValue, reconnect.message)
        }
    }

    // MARK: GET ?job_id=

    func job(_ text: String, userID: UUID) throws -> Response {
        guard let jobID = UUID(uuidString: text) else {
            throw HTTPError(.badRequest, code: "invalid_job_id", "job_id must be a uuid")
        }
        let (job, now) = try database.transaction(readOnly: true) { connection in
            _ = try Tenancy.enter(connection, userID: userID)
            // Another firm's job is as unknown as one that never existed.
            guard let job = try JobQueue.read(connection, jobID: jobID) else { throw Self.notFound("Job not found") }
            // The database's clock, which stamped started_at.
            return (job, try connection.execute("SELECT now() AS now").single().date("now"))
        }
        return Response.json(try Self.jobAnswer(job, now: now))
    }

    /// `{job_id, kind, status, progress: {done, total, failed}, eta_seconds, result, error,
    /// created_at, started_at, finished_at}`; `result` is the handler's stored JSON as it is.
    static func jobAnswer(_ job: JobRecord, now: Date) throws -> [String: Any] {
        [
            "job_id": job.id.uuidString.lowercased(), "kind": job.kind, "status": job.status.rawValue,
            "progress": [
                "done": job.progress.done, "total": orNull(job.progress.total),
                "failed": job.progress.failed,
            ],
            "eta_seconds": orNull(etaSeconds(job, now: now)),
            "result": orNull(try job.resultJSON.map(parseJSON)),
            "error": orNull(job.lastError),
            "created_at": Timestamp.iso8601(job.createdAt),
            "started_at": orNull(job.startedAt.map { Timestamp.iso8601($0) }),
            "finished_at": orNull(job.finishedAt.map { Timestamp.iso8601($0) }),
        ]
    }

    /// Seconds left at the pace so far: items remaining × (time since the run started ÷ items
    /// done), rounded up. Nil unless the job is running, has done something and knows its total.
    static func etaSeconds(_ job: JobRecord, now: Date) -> Int? {
        etaSeconds(status: job.status, progress: job.progress, startedAt: job.startedAt, now: now)
    }

    /// The same from a job's parts (the status route reads them in its own query).
    static func etaSeconds(status: Job.Status, progress: JobProgress, startedAt: Date?, now: Date) -> Int? {
        guard status == .running, progress.done > 0, let total = progress.total, let started = startedAt else {
            return nil
        }
        let elapsed = max(now.timeIntervalSince(started), 0)
        let remaining = max(total - progress.done, 0)
        return Int((Double(remaining) * elapsed / Double(progress.done)).rounded(.up))
    }

    static func parseJSON(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
    }

    // MARK: GET history

    static let defaultLimit = 20
    static let maxLimit = 100

    func history(_ request: Request, userID: UUID) throws -> Response {
        let matterID = try Self.parameter(request, "matter_id").map { text throws(HTTPError) -> UUID in
            guard let id = UUID(uuidString: text) else {
                throw HTTPError(.badRequest, code: "invalid_matter_id", "matter_id must be a uuid")
            }
            return id
        }
        var limit = Self.defaultLimit
        if let text = Self.parameter(request, "limit") {
            guard let value = Int(text), (1...Self.maxLimit).contains(value) else {
                throw HTTPError(
                    .badRequest, code: "invalid_limit", "limit must be a whole number from 1 to \(Self.maxLimit)")
            }
            limit = value
        }
        let cursor = try Self.parameter(request, "cursor").map { text throws(HTTPError) -> HistoryCursor in
            guard let cursor = HistoryCursor(text: text) else {
                throw HTTPError(
                    .badRequest, code: "invalid_cursor", "cursor is not one this route gave out (use next_cursor)")
            }
            return cursor
        }
        // Authenticate, the matter's existence and the page: one round trip, one implicit
        // transaction. Row-level security limits every statement to the caller's firm.
        var statements = [Tenancy.authenticate(userID)]
        if let matterID {
            statements.append(
                Statement(
                    "SELECT EXISTS (SELECT 1 FROM matters WHERE id = $1 AND firm_id = app_current_firm()) AS found",
                    [matterID]))
        }
        // One row more than the page tells whether another page follows.
        statements.append(Self.historyPage(matterID: matterID, after: cursor, limit: limit + 1))
        let results = try database.pipelinedRead(statements)
        _ = try Tenancy.caller(from: results[0], userID: userID)
        if matterID != nil, try !results[1].single().bool("found") {
            // Another firm's matter is as unknown as one that never existed: not an empty page.
            throw Self.notFound("Matter not found")
        }
        let rows = results[results.count - 1].rows
        var entries: [Any] = []
        var last: HistoryCursor?
        for row in rows.prefix(limit) {
            entries.append(try Self.entry(row))
            last = HistoryCursor(microseconds: try row.int("created_us"), id: try row.uuid("id"))
        }
        let next = rows.count > limit ? last?.text : nil
        return Response.json(["entries": entries, "next_cursor": Self.orNull(next)])
    }

    /// A page of history, newest first (`created_at DESC, id DESC`, migration 031's indexes),
    /// strictly after `after` in that order. Separate texts with and without a matter or a cursor,
    /// so each prepared statement keeps a plan that uses its index.
    static func historyPage(matterID: UUID?, after cursor: HistoryCursor?, limit: Int) -> Statement {
        var conditions = ["l.firm_id = app_current_firm()"]
        var parameters: [any SQLValueConvertible] = []
        if let matterID {
            parameters.append(matterID)
            conditions.append("l.matter_id = $\(parameters.count)::uuid")
        }
        if let cursor {
            // Microseconds since the epoch are below 2^53 (`HistoryCursor`), so the float8
            // product is exact and the comparison finds the cursor's row to the microsecond.
            parameters.append(cursor.microseconds)
            parameters.append(cursor.id)
            conditions.append(
                "(l.created_at, l.id) < ('epoch'::timestamptz + $\(parameters.count - 1)::float8 * interval '1 microsecond', $\(parameters.count)::uuid)"
            )
        }
        parameters.append(limit)
        return Statement(
            """
            SELECT l.id, l.action, l.status, l.matter_id, l.upload_id, l.external_id, l.details, l.error_message,
                   l.job_id, l.created_at, (extract(epoch FROM l.created_at) * 1000000)::bigint AS created_us
            FROM integration_sync_logs l
            WHERE \(conditions.joined(separator: " AND "))
            ORDER BY l.created_at DESC, l.id DESC
            LIMIT $\(parameters.count)
            """, parameters)
    }

    static func entry(_ row: Row) throws -> [String: Any] {
        [
            "id": try row.uuid("id").uuidString.lowercased(), "action": try row.string("action"),
            "status": try row.string("status"),
            "matter_id": orNull(try row.optionalUUID("matter_id")?.uuidString.lowercased()),
            "upload_id": orNull(try row.optionalUUID("upload_id")?.uuidString.lowercased()),
            "external_id": orNull(try row.optionalString("external_id")),
            "details": try row.json("details"),
            "error_message": orNull(try row.optionalString("error_message")),
            "created_at": Timestamp.iso8601(try row.date("created_at")),
            "job_id": orNull(try row.optionalUUID("job_id")?.uuidString.lowercased()),
        ]
    }
}

/// Where a history page ends: the last entry's `created_at` (microseconds since the epoch, as
/// PostgreSQL stores it) and id. Opaque to callers: base64url of a version byte, the
/// microseconds (8 bytes, big-endian) and the id (16 bytes).
struct HistoryCursor: Equatable {
    let microseconds: Int64
    let id: UUID

    static let version: UInt8 = 1
    /// Below 2^53 (the year 2255): exact as a float8, so the page query finds the row exactly.
    static let microsecondsRange: Range<Int64> = 0..<(1 << 53)

    init(microseconds: Int64, id: UUID) {
        self.microseconds = microseconds
        self.id = id
    }

    /// Nil for anything this route did not give out in this shape.
    init?(text: String) {
        guard text.utf8.count <= 64, let bytes = Base64URL.decode(text), bytes.count == 25,
            bytes[0] == Self.version
        else { return nil }
        let value = bytes[1..<9].reduce(Int64(0)) { $0 << 8 | Int64($1) }
        guard Self.microsecondsRange.contains(value) else { return nil }
        let b = Array(bytes[9..<25])
        microseconds = value
        id = UUID(
            uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
        )
    }

    var text: String {
        var bytes: [UInt8] = [Self.version]
        bytes += (0..<8).reversed().map { UInt8(truncatingIfNeeded: microseconds >> ($0 * 8)) }
        bytes += withUnsafeBytes(of: id.uuid) { Array($0) }
        return Base64URL.encode(bytes)
    }
}

/// What a sync `POST` asks for, its shape checked before any database work: `action` (default
/// `sync_matter`) and exactly that action's fields.
enum SyncRequest: Equatable {
    case syncMatter(UUID)
    case syncMatters([UUID])
    case syncAll
    case pullMatters
    case importMatters
    /// The failed (dead) job with this id, again.
    case retry(UUID)
    /// The firm's webhook subscription made sure of (the FAQ's "Re-register webhooks").
    case ensureWebhooks

    static let actions = [
        "sync_matter", "sync_matters", "sync_all", "pull_matters", "import_matters", "retry", "ensure_webhooks",
    ]

    /// The kinds `retry` re-runs, and whether the action that starts them is the firm admins'.
    /// Other kinds (webhook events, the nightly reconciliation) the service retries itself.
    static let retryableKinds: [String: Bool] = [
        SyncJobs.syncMatter: false, SyncJobs.pullMatters: false, SyncJobs.pushContact: false,
        SyncJobs.syncMatters: true, ImportMattersJob.kind: true, EnsureWebhookSubscriptionJob.kind: true,
    ]

    init(body: [String: Any]) throws(HTTPError) {
        var action = "sync_matter"
        if let value = body["action"] {
            guard let text = value as? String, Self.actions.contains(text) else {
                throw Self.invalid("invalid_action", "action must be one of \(Self.actions.joined(separator: ", "))")
            }
            action = text
        }
        let fields: Set<String> =
            switch action {
            case "sync_matter": ["action", "matter_id"]
            case "sync_matters": ["action", "matter_ids"]
            case "retry": ["action", "job_id"]
            default: ["action"]
            }
        if let unknown = body.keys.sorted().first(where: { !fields.contains($0) }) {
            throw Self.invalid("unknown_field", "\(unknown.prefix(64)) is not a field of \(action)")
        }
        switch action {
        case "sync_matter":
            guard let value = body["matter_id"] else { throw Self.invalid("missing_field", "matter_id is required") }
            guard let text = value as? String, let id = UUID(uuidString: text) else {
                throw Self.invalid("invalid_field", "matter_id must be a uuid")
            }
            self = .syncMatter(id)
        case "sync_matters":
            guard let value = body["matter_ids"] else {
                throw Self.invalid("missing_field", "matter_ids is required")
            }
            guard let list = value as? [Any], (1...SyncJobs.maxBulkMatters).contains(list.count) else {
                throw Self.invalid(
                    "invalid_field", "matter_ids must be an array of 1 to \(SyncJobs.maxBulkMatters) matter ids")
            }
            var ids: [UUID] = []
            var seen = Set<UUID>()
            for (index, item) in list.enumerated() {
                guard let text = item as? String, let id = UUID(uuidString: text) else {
                    throw Self.invalid("invalid_field", "matter_ids[\(index)] must be a uuid")
                }
                guard seen.insert(id).inserted else {
                    throw Self.invalid("invalid_field", "matter_ids[\(index)] repeats an earlier matter id")
                }
                ids.append(id)
            }
            self = .syncMatters(ids)
        case "sync_all":
            self = .syncAll
        case "import_matters":
            self = .importMatters
        case "retry":
            guard let value = body["job_id"] else { throw Self.invalid("missing_field", "job_id is required") }
            guard let text = value as? String, let id = UUID(uuidString: text) else {
                throw Self.invalid("invalid_field", "job_id must be a uuid")
            }
            self = .retry(id)
        case "ensure_webhooks":
            self = .ensureWebhooks
        default:
            self = .pullMatters
        }
    }

    static func invalid(_ code: String, _ message: String) -> HTTPError {
        HTTPError(.badRequest, code: code, message)
    }

    /// Bulk syncs and the webhook subscription are the firm admins': the refusal's message, nil
    /// for any firm user (a retry is judged by its job's kind, in `enqueue`).
    var firmAdminsOnly: String? {
        switch self {
        case .syncMatters, .syncAll, .importMatters: "Only firm administrators can sync several matters at once"
        case .ensureWebhooks: "Only firm administrators can re-register webhooks"
        case .syncMatter, .pullMatters, .retry: nil
        }
    }

    /// 404 unless every named matter is the transaction's firm's (row-level security hides other
    /// firms' matters; the predicate says so again).
    func requireMatters(_ connection: Connection) throws {
        let ids: [UUID]
        switch self {
        case .syncMatter(let id): ids = [id]
        case .syncMatters(let list): ids = list
        case .syncAll, .pullMatters, .importMatters, .retry, .ensureWebhooks: return
        }
        // Ids travel as one comma-separated text (no array parameters here); each is a UUID.
        let missing = try connection.execute(
            """
            SELECT wanted.id FROM unnest(string_to_array($1, ',')::uuid[]) WITH ORDINALITY AS wanted (id, position)
            WHERE NOT EXISTS (SELECT 1 FROM matters m WHERE m.id = wanted.id AND m.firm_id = app_current_firm())
            ORDER BY wanted.position LIMIT 1
            """, [ids.map { $0.uuidString.lowercased() }.joined(separator: ",")]
        ).first.map { try $0.uuid("id") }
        guard let missing else { return }
        if case .syncMatters = self, let index = ids.firstIndex(of: missing) {
            throw SyncHandler.notFound("matter_ids[\(index)] is not a matter of this firm")
        }
        throw SyncHandler.notFound("Matter not found")
    }

    /// Enqueues the job in the caller's transaction; the id of the pending job that will run it
    /// (a new one, or the pending one with the same key, which absorbs a repeated click).
    func enqueue(_ connection: Connection, isFirmAdmin: Bool) throws -> UUID {
        switch self {
        case .syncMatter(let id):
            try JobQueue.enqueue(
                connection, kind: SyncJobs.syncMatter, key: SyncJobs.matterKey(id),
                payload: SyncMatterPayload(matterID: id), priority: .interactive)
        case .syncMatters(let ids):
            try JobQueue.enqueue(
                connection, kind: SyncJobs.syncMatters, key: nil, payload: BulkSyncPayload(matterIDs: ids),
                priority: .bulk)
        case .syncAll:
            try JobQueue.enqueue(
                connection, kind: SyncJobs.syncMatters, key: SyncJobs.allMattersKey,
                payload: BulkSyncPayload.everyMatter, priority: .bulk)
        case .pullMatters:
            try JobQueue.enqueue(
                connection, kind: SyncJobs.pullMatters, key: SyncJobs.firmKey, payload: [String: String](),
                priority: .interactive)
        case .importMatters:
            try ImportMattersJob.enqueue(connection)
        case .ensureWebhooks:
            try EnsureWebhookSubscriptionJob.enqueue(connection)
        case .retry(let id):
            try Self.retry(connection, jobID: id, isFirmAdmin: isFirmAdmin)
        }
    }

    /// A new job with the failed one's kind, key, payload, priority and attempts (its key makes
    /// it join a pending job doing the same). 404 for an unknown job or another firm's (row-level
    /// security hides it), 409 `not_retryable` unless it is dead and of a kind retried here.
    static func retry(_ connection: Connection, jobID: UUID, isFirmAdmin: Bool) throws -> UUID {
        guard
            let row = try connection.execute(
                "SELECT kind, status FROM jobs WHERE id = $1 AND firm_id = app_current_firm()", [jobID]
            ).first
        else { throw SyncHandler.notFound("Job not found") }
        let kind = try row.string("kind")
        let status = try row.string("status")
        guard let needsFirmAdmin = retryableKinds[kind] else {
            throw HTTPError(.conflict, code: "not_retryable", "A \(kind) job is retried by the service itself")
        }
        guard status == Job.Status.dead.rawValue else {
            throw HTTPError(.conflict, code: "not_retryable", "Only a failed job can be retried; this one is \(status)")
        }
        if needsFirmAdmin && !isFirmAdmin {
            throw HTTPError(.forbidden, code: "forbidden", "Only firm administrators can retry this job")
        }
        return try connection.execute(
            """
            SELECT app_enqueue_job(j.kind, j.key, j.payload, j.priority, NULL::timestamptz, j.max_attempts, true) AS id
            FROM jobs j WHERE j.id = $1 AND j.firm_id = app_current_firm()
            """, [jobID]
        ).single().uuid("id")
    }
}
