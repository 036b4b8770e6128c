import Basics
import Foundation
import PostgreSQL
import Smokeball

/// `process_webhook_event`: applies one stored delivery (`smokeball_webhook_events`) to CaseHug.
/// The event is its own work item: the worker claims it from the event queue (migration 045)
/// and runs it here as a job, under a `JobScope` of the event's lease.
///
/// The body of a delivery is not signed (FACTS.md), so it is only a hint of which resource
/// changed: a matter or contact event re-reads the resource and applies what the read says,
/// never the payload's fields. Our own writes come back as events carrying the `RequestId` we
/// sent (recorded in `smokeball_sync_intents` or `smokeball_sent_requests`): those are `echo`,
/// with no re-read. Changes to CaseHug rows are made with `app.sync_origin` = `smokeball`, so the
/// auto-sync triggers (migration 033) never send them back. See docs/inbound.md.
public struct WebhookEventJob: JobHandler {
    public static let kind = InboundJobs.processWebhookEvent
    public var kind: String { Self.kind }

    let tokens: SmokeballTokenProvider
    /// For `matter.created` with `import_new_matters` on (`MatterCreatedImport`).
    let matterTypes: MatterTypeResolver

    public init(tokens: SmokeballTokenProvider, matterTypes: MatterTypeResolver? = nil) {
        self.tokens = tokens
        self.matterTypes = matterTypes ?? MatterTypeResolver(database: tokens.database)
    }

    /// What processing did with the event (`smokeball_webhook_events.status`).
    public enum Outcome: String, Sendable, Encodable {
        case applied, echo, stale, ignored, failed
    }

    /// What the job leaves as its result: the event's outcome and, when nothing was done, why.
    struct Result: Encodable, Sendable {
        let status: Outcome
        let reason: String?
    }

    /// The stored delivery.
    struct Event: Sendable {
        let id: UUID
        let type: String
        let resourceID: String?
        let requestID: String?
        let payloadJSON: String
        let processedStatus: Outcome?

        var payload: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(payloadJSON.utf8))) as? [String: Any] ?? [:]
        }

        /// The resource the event names: the stored column, else the payload's id.
        var resource: String? {
            if let resourceID, !resourceID.isEmpty { return resourceID }
            let payload = payload
            return (payload["id"] as? String) ?? (payload["resourceId"] as? String)
        }
    }

    public func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        let payload = try job.payload(WebhookEventPayload.self)
        let event = try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            return try Self.load(connection, payload.eventID)
        }
        guard let event else { return Result(status: .ignored, reason: "event_not_found") }
        if let done = event.processedStatus {
            // A re-run after the outcome was committed: nothing left to do.
            return Result(status: done, reason: "already_processed")
        }
        do {
            return try process(event, context)
        } catch {
            let failure = SyncFailure.jobError(error, doing: "processing a webhook event")
            let readable = JobError.readable(failure)
            if !readable.retryable || job.attempts >= job.maxAttempts {
                try context.database.transaction { connection in
                    _ = try context.scope.enter(connection)
                    try Self.finish(connection, event, .failed, readable.message)
                }
            }
            throw failure
        }
    }

    func process(_ event: Event, _ context: JobContext) throws -> Result {
        switch event.type {
        case "noop":
            return try record(event, context) { connection in
                try connection.execute(
                    """
                    UPDATE firm_integrations SET webhook_last_noop_at = now()
                    WHERE firm_id = app_current_firm() AND platform = 'smokeball'
                    """)
                return Result(status: .applied, reason: nil)
            }
        case "error":
            return try record(event, context) { connection in try Self.applyError(connection, event) }
        default:
            break
        }
        if let requestID = event.requestID, !requestID.isEmpty {
            let ours = try context.database.transaction { connection in
                _ = try context.scope.enter(connection)
                return try Self.isOurs(connection, requestID: requestID)
            }
            if ours {
                return try record(event, context) { _ in Result(status: .echo, reason: nil) }
            }
        }
        switch event.type {
        case "matter.updated", "matter.closed", "matter.deleted":
            guard let id = event.resource else {
                return try record(event, context) { _ in Result(status: .ignored, reason: "no_resource_id") }
            }
            let linked = try context.database.transaction { connection in
                _ = try context.scope.enter(connection)
                return try Self.linkedMatter(connection, id) != nil
            }
            guard linked else {
                return try record(event, context) { _ in Result(status: .ignored, reason: "not_linked") }
            }
            guard let state: MatterState = try reread("/matters/", id, context) else {
                return try record(event, context) { _ in Result(status: .ignored, reason: "not_readable") }
            }
            return try record(event, context) { connection in try Self.applyMatterState(connection, id, state).result }
        case "contact.updated":
            guard let id = event.resource else {
                return try record(event, context) { _ in Result(status: .ignored, reason: "no_resource_id") }
            }
            let linked = try context.database.transaction { connection in
                _ = try context.scope.enter(connection)
                return try connection.execute(
                    "SELECT 1 FROM clients WHERE firm_id = app_current_firm() AND smokeball_contact_id = $1 LIMIT 1",
                    [id]
                ).first != nil
            }
            guard linked else {
                return try record(event, context) { _ in Result(status: .ignored, reason: "not_linked") }
            }
            guard let contact: SmokeballContact = try reread("/contacts/", id, context) else {
                return try record(event, context) { _ in Result(status: .ignored, reason: "not_readable") }
            }
            return try record(event, context) { connection in try Self.applyContactState(connection, id, contact).result
            }
        case "matter.created":
            let importing = try context.database.transaction(readOnly: true) { connection in
                _ = try context.scope.enter(connection)
                return try IntegrationSettings.current(connection).importNewMatters
            }
            guard importing, let id = event.resource else {
                return try record(event, context) { _ in Result(status: .ignored, reason: "not_imported") }
            }
            let result = try MatterCreatedImport(
                tokens: tokens, importer: ImportMattersJob(tokens: tokens, matterTypes: matterTypes)
            ).run(id, context)
            return try record(event, context) { _ in result }
        default:
            // files.updated, memo.created, contact.created/deleted and types we do not know.
            return try record(event, context) { _ in Result(status: .ignored, reason: "no_action") }
        }
    }

    /// Runs `apply` and records its outcome on the event, in one transaction with the change.
    func record(_ event: Event, _ context: JobContext, _ apply: (Connection) throws -> Result) throws -> Result {
        try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            try connection.execute("SELECT set_config('app.sync_origin', 'smokeball', true)")
            let result = try apply(connection)
            try Self.finish(connection, event, result.status, nil, reason: result.reason)
            return result
        }
    }

    /// GETs the resource (background lane). nil when Smokeball does not have it (404) or it is
    /// not the account's (403): nothing to follow.
    func reread<Value: Decodable & Sendable>(_ prefix: String, _ id: String, _ context: JobContext) throws -> Value? {
        do {
            return try tokens.withAccess(context.scope) { client, access in
                let read: SmokeballResult<Value> = try client.get(
                    prefix + PercentEncoding.encode(id), access: access, lane: .background)
                return read.value
            }
        } catch let error as SmokeballError where error.code == .notFound || error.upstreamStatus == 403 {
            return nil
        }
    }

    // MARK: Database

    static func load(_ connection: Connection, _ id: UUID) throws -> Event? {
        try connection.execute(
            """
            SELECT id, event_type, resource_id, smokeball_request_id, payload::text AS payload, processed, status
            FROM smokeball_webhook_events WHERE firm_id = app_current_firm() AND id = $1::uuid
            """, [id]
        ).first.map { row in
            Event(
                id: try row.uuid("id"), type: try row.string("event_type"),
                resourceID: try row.optionalString("resource_id"),
                requestID: try row.optionalString("smokeball_request_id"), payloadJSON: try row.string("payload"),
                processedStatus: try row.bool("processed")
                    ? Outcome(rawValue: try row.optionalString("status") ?? "") ?? .applied : nil)
        }
    }

    /// Records the outcome, and why when nothing was done (`status_reason`, migration 045: the
    /// event is its own work item, so no job result keeps it).
    static func finish(
        _ connection: Connection, _ event: Event, _ status: Outcome, _ error: String?, reason: String? = nil
    ) throws {
        try connection.execute(
            """
            UPDATE smokeball_webhook_events SET processed = true, processed_at = now(), status = $2, error_message = $3,
                status_reason = $4
            WHERE firm_id = app_current_firm() AND id = $1::uuid
            """, [event.id, status.rawValue, error.map { String($0.prefix(1000)) }, reason])
    }

    /// A RequestId we sent: a create (its intent) or an update (`smokeball_sent_requests`).
    static func isOurs(_ connection: Connection, requestID: String) throws -> Bool {
        try connection.execute(
            """
            SELECT EXISTS (SELECT 1 FROM smokeball_sent_requests WHERE firm_id = app_current_firm() AND request_id = $1)
                OR EXISTS (SELECT 1 FROM smokeball_sync_intents WHERE firm_id = app_current_firm() AND request_id = $1)
                AS ours
            """, [requestID]
        ).single().bool("ours")
    }

    /// Records, just before an update is sent, the RequestId it carries, so that its echo is
    /// recognised. In its own short transaction: committed before the request leaves.
    public static func recordSent(
        requestID: String, resource: String, resourceID: String?, scope: any TenantScope, database: Database
    ) throws {
        try database.transaction { connection in
            _ = try scope.enter(connection)
            try connection.execute(
                """
                INSERT INTO smokeball_sent_requests (firm_id, request_id, resource, resource_id)
                VALUES (app_current_firm(), $1, $2, $3) ON CONFLICT DO NOTHING
                """, [requestID, resource, resourceID])
        }
    }

    // MARK: Matters

    /// The parts of a matter the status follows.
    struct MatterState: Decodable, Sendable {
        var versionId: String?
        var status: String?
    }

    /// CaseHug's status for Smokeball's; nil for one we do not know.
    static func caseHugStatus(_ smokeball: String?) -> String? {
        switch smokeball?.lowercased() {
        case "open", "pending": "active"
        case "closed", "deleted", "cancelled", "canceled": "closed"
        default: nil
        }
    }

    static func linkedMatter(_ connection: Connection, _ smokeballID: String, lock: Bool = false) throws -> Row? {
        try connection.execute(
            """
            SELECT id, status, smokeball_version_id FROM matters
            WHERE firm_id = app_current_firm() AND smokeball_matter_id = $1
              AND smokeball_link_status IS DISTINCT FROM 'failed'
            """ + (lock ? " FOR UPDATE" : ""), [smokeballID]
        ).first
    }

    /// Whether a re-read at `version` is older than the state applied at `applied`. A versionId
    /// is ticks of the change (Smokeball takes one as `UpdatedSince`); one that is not a number
    /// cannot be ordered, and the re-read, which is always Smokeball's latest, wins.
    static func isOlder(_ version: String?, than applied: String?) -> Bool {
        guard let version = version.flatMap({ Int64($0) }), let applied = applied.flatMap({ Int64($0) }) else {
            return false
        }
        return version < applied
    }

    /// A CaseHug matter's status that followed Smokeball (reconciliation records it as drift).
    struct MatterDrift: Sendable, Equatable {
        let matterID: UUID
        let from: String
        let to: String
    }

    /// Applies Smokeball's state to the linked matter (locked), unless it is older than the state
    /// applied already; the drift when the status changed. Webhook events and reconciliation
    /// both apply through here.
    static func applyMatterState(_ connection: Connection, _ smokeballID: String, _ state: MatterState) throws
        -> (result: Result, drift: MatterDrift?)
    {
        guard let row = try linkedMatter(connection, smokeballID, lock: true) else {
            return (Result(status: .ignored, reason: "not_linked"), nil)
        }
        if isOlder(state.versionId, than: try row.optionalString("smokeball_version_id")) {
            return (Result(status: .stale, reason: nil), nil)
        }
        guard let status = caseHugStatus(state.status) else {
            return (Result(status: .ignored, reason: "unknown_status"), nil)
        }
        let matterID = try row.uuid("id")
        let previous = try row.string("status")
        // `smokeball_sent.status` follows too, so the next sync does not send the old one back.
        try connection.execute(
            """
            UPDATE matters SET status = $2, smokeball_version_id = coalesce($3, smokeball_version_id),
                updated_at = CASE WHEN status = $2 THEN updated_at ELSE now() END,
                smokeball_sent = CASE WHEN smokeball_sent ? 'status'
                    THEN jsonb_set(smokeball_sent, '{status}', to_jsonb($4::text)) ELSE smokeball_sent END
            WHERE firm_id = app_current_firm() AND id = $1::uuid
            """, [matterID, status, state.versionId, status == "closed" ? "Closed" : "Open"])
        let drift = previous == status ? nil : MatterDrift(matterID: matterID, from: previous, to: status)
        return (Result(status: .applied, reason: nil), drift)
    }

    // MARK: Contacts

    /// A CaseHug client that followed its Smokeball contact: which of its fields changed (names
    /// only, never values: reconciliation records it as drift).
    struct ClientDrift: Sendable, Equatable {
        let clientID: UUID
        let fields: [String]
    }

    /// Applies the contact to every client linked to it: each takes the person's name, and its
    /// email and phone when Smokeball has one (a blank one there leaves CaseHug's, as the push
    /// leaves Smokeball's); the clients that changed. Webhook events and reconciliation both
    /// apply through here.
    static func applyContactState(_ connection: Connection, _ contactID: String, _ contact: SmokeballContact) throws
        -> (result: Result, drift: [ClientDrift])
    {
        if contact.isDeleted == true { return (Result(status: .ignored, reason: "contact_deleted"), []) }
        guard let person = contact.person else { return (Result(status: .ignored, reason: "not_a_person"), []) }
        let phone = [person.phone, person.cell].compactMap { $0 }.first { !$0.digits.isEmpty }.map {
            [$0.areaCode, $0.number].compactMap { PushContactJob.nonBlank($0) }.joined(separator: " ")
        }
        let changed = try connection.execute(
            """
            WITH old AS (
                SELECT id, first_name, last_name, email, phone FROM clients c
                WHERE firm_id = app_current_firm() AND smokeball_contact_id = $1
                  AND NOT EXISTS (
                      SELECT 1 FROM jobs j
                      WHERE j.firm_id = app_current_firm() AND j.kind = '\(PushContactJob.kind)'
                        AND j.key = '\(SyncJobs.contactKeyPrefix)' || c.id::text AND j.status = 'pending')
                FOR UPDATE OF c
            )
            UPDATE clients c SET first_name = coalesce($2, c.first_name), last_name = coalesce($3, c.last_name),
                email = coalesce($4, c.email), phone = coalesce($5, c.phone), updated_at = now()
            FROM old
            WHERE c.firm_id = app_current_firm() AND c.id = old.id
              AND (c.first_name, c.last_name, c.email, c.phone)
                  IS DISTINCT FROM (coalesce($2, c.first_name), coalesce($3, c.last_name), coalesce($4, c.email),
                                    coalesce($5, c.phone))
            RETURNING c.id, array_to_string(array_remove(ARRAY[
                CASE WHEN c.first_name IS DISTINCT FROM old.first_name THEN 'first_name' END,
                CASE WHEN c.last_name IS DISTINCT FROM old.last_name THEN 'last_name' END,
                CASE WHEN c.email IS DISTINCT FROM old.email THEN 'email' END,
                CASE WHEN c.phone IS DISTINCT FROM old.phone THEN 'phone' END], NULL), ',') AS fields
            """,
            [
                contactID, PushContactJob.nonBlank(person.firstName), PushContactJob.nonBlank(person.lastName),
                PushContactJob.nonBlank(person.email), phone,
            ]
        ).rows.map { row in
            ClientDrift(
                clientID: try row.uuid("id"),
                fields: try row.string("fields").split(separator: ",").map(String.init))
        }
        if changed.isEmpty,
            try connection.execute(
                """
                SELECT 1 FROM clients c JOIN jobs j ON j.firm_id = c.firm_id AND j.kind = '\(PushContactJob.kind)'
                    AND j.key = '\(SyncJobs.contactKeyPrefix)' || c.id::text AND j.status = 'pending'
                WHERE c.firm_id = app_current_firm() AND c.smokeball_contact_id = $1 LIMIT 1
                """, [contactID]
            ).first != nil
        {
            // A CaseHug edit of the client is waiting to be pushed (`push_contact`, debounced):
            // what Smokeball has is older than it, and applying it would lose the edit. The
            // push sends the edit, merged into Smokeball's contact.
            return (Result(status: .stale, reason: "casehug_edit_pending"), [])
        }
        return (Result(status: .applied, reason: nil), changed)
    }

    // MARK: Errors

    /// An `error` event: a write Smokeball accepted (202) and failed later. Matched by its
    /// RequestId (and resourceId) to our create or update. A failed create's link is removed, so
    /// the next sync creates the resource again; the history shows Smokeball's message (which is
    /// Smokeball's text about the firm's data: kept out of logs).
    static func applyError(_ connection: Connection, _ event: Event) throws -> Result {
        guard let requestID = event.requestID, !requestID.isEmpty else {
            return Result(status: .ignored, reason: "no_request_id")
        }
        let payload = event.payload
        let message = (payload["message"] as? String).map { "Smokeball: " + $0 } ?? "Smokeball could not process it"
        let resourceID = payload["resourceId"] as? String
        if let intent = try connection.execute(
            """
            SELECT id, resource, local_id, external_id FROM smokeball_sync_intents
            WHERE firm_id = app_current_firm() AND request_id = $1 AND ($2::text IS NULL OR external_id IS NULL
                OR external_id = $2)
            ORDER BY created_at DESC LIMIT 1
            """, [requestID, resourceID]
        ).first {
            let localID = try intent.uuid("local_id")
            let external = try intent.optionalString("external_id") ?? resourceID
            try connection.execute(
                "UPDATE smokeball_sync_intents SET state = 'abandoned', updated_at = now() WHERE id = $1::uuid",
                [try intent.uuid("id")])
            switch try intent.string("resource") {
            case "contact":
                try connection.execute(
                    """
                    UPDATE clients SET smokeball_contact_id = NULL, smokeball_contact_linked_by = NULL,
                        smokeball_contact_failed_at = now()
                    WHERE firm_id = app_current_firm() AND id = $1::uuid AND smokeball_contact_id = $2
                    """, [localID, external])
                try SyncLog.record(
                    connection, step: .contact, outcome: .failed, matterID: nil, externalID: external,
                    details: ["request_id": requestID], error: message)
            case "matter":
                // Kept as `failed` (the status route shows it); a sync treats it as unlinked.
                try connection.execute(
                    """
                    UPDATE matters SET smokeball_link_status = 'failed', smokeball_sent = NULL,
                        smokeball_folder_id = NULL, smokeball_version_id = NULL, smokeball_link_failed_at = now()
                    WHERE firm_id = app_current_firm() AND id = $1::uuid AND smokeball_matter_id = $2
                    """, [localID, external])
                try SyncLog.record(
                    connection, step: .matter, outcome: .failed, matterID: localID, externalID: external,
                    details: ["request_id": requestID], error: message)
            case "folder":
                try connection.execute(
                    """
                    UPDATE matters SET smokeball_folder_id = NULL
                    WHERE firm_id = app_current_firm() AND id = $1::uuid AND smokeball_folder_id = $2
                    """, [localID, external])
                try SyncLog.record(
                    connection, step: .folder, outcome: .failed, matterID: localID, externalID: external,
                    details: ["request_id": requestID], error: message)
            default:
                try connection.execute(
                    """
                    UPDATE uploads SET smokeball_file_id = NULL, smokeball_synced_at = NULL
                    WHERE firm_id = app_current_firm() AND id = $1::uuid AND smokeball_file_id = $2
                    """, [localID, external])
                try SyncLog.record(
                    connection, step: .document, outcome: .failed, matterID: nil, uploadID: localID,
                    externalID: external, details: ["request_id": requestID], error: message)
            }
            return Result(status: .applied, reason: nil)
        }
        if let sent = try connection.execute(
            """
            SELECT resource, resource_id FROM smokeball_sent_requests
            WHERE firm_id = app_current_firm() AND request_id = $1
            """, [requestID]
        ).first {
            let external = try sent.optionalString("resource_id") ?? resourceID
            if try sent.string("resource") == "matter" {
                // What was sent is not in Smokeball: the next sync sends every field again.
                let matterID = try connection.execute(
                    """
                    UPDATE matters SET smokeball_sent = NULL
                    WHERE firm_id = app_current_firm() AND smokeball_matter_id = $1 RETURNING id
                    """, [external]
                ).first.map { try $0.uuid("id") }
                try SyncLog.record(
                    connection, step: .matter, outcome: .failed, matterID: matterID, externalID: external,
                    details: ["request_id": requestID], error: message)
            } else {
                try SyncLog.record(
                    connection, step: .contact, outcome: .failed, matterID: nil, externalID: external,
                    details: ["request_id": requestID], error: message)
            }
            return Result(status: .applied, reason: nil)
        }
        return Result(status: .ignored, reason: "unknown_request")
    }
}
