import Basics
import Foundation
import PostgreSQL
import Smokeball

/// `reconcile_firm`: the nightly reconciliation of one firm (issue #13 item 4, docs/inbound.md).
///
/// Webhooks get lost (a subscription that vanished, a delivery Smokeball gave up on, an
/// outage of ours). Once a day per connected firm this job repairs what they missed: it refreshes
/// the access token ahead of its calls (a revoked or expired grant shows here first), ensures
/// the webhook subscription (recreating it if Smokeball dropped it), then reads the matters and
/// contacts changed since the last run's start (minus `safetyMargin`) and applies them to the
/// linked CaseHug matters and clients through the same code as webhook events
/// (`WebhookEventJob.applyMatterState`, `applyContactState`: versionId-ordered, under
/// `app.sync_origin = 'smokeball'`, so nothing echoes back). Each change is a history row; the
/// run's row (`smokeball_reconciliations`, migration 038) holds the counts the status route shows.
///
/// The worker schedules it (`schedule`): one run per firm per UTC day, at `time`, however many
/// workers ask. A re-run (after a crash) reads from the same watermark and converges: what was
/// applied already is no change the second time.
public struct ReconcileFirmJob: ScheduledJobHandler {
    public static let kind = "reconcile_firm"
    public var kind: String { Self.kind }

    /// Changes this long before the watermark are read again: Smokeball's clock may differ from
    /// ours, and a write it accepted before our last run began may have become readable (with its
    /// earlier time) only after that run read the list.
    public static let safetyMargin: TimeInterval = 15 * 60

    let tokens: SmokeballTokenProvider
    let subscriptions: WebhookSubscriptions
    /// The time of day (UTC) runs are scheduled at.
    public let time: ReconciliationTime

    public init(tokens: SmokeballTokenProvider, subscriptions: WebhookSubscriptions, time: ReconciliationTime) {
        self.tokens = tokens
        self.subscriptions = subscriptions
        self.time = time
    }

    struct Payload: Decodable {
        let runID: UUID

        enum CodingKeys: String, CodingKey {
            case runID = "run_id"
        }
    }

    /// What a run found: the job's result and the run row's `summary`. Counts and ids only.
    struct Summary: Codable, Sendable, Equatable {
        var outcome = "running"
        var mattersRead = 0
        var mattersChanged = 0
        var mattersStale = 0
        var contactsRead = 0
        var clientsChanged = 0
        /// `kept`, `recreated`, or `lost` (gone with a revoked or expired grant).
        var subscription: String?
        var duplicateSubscriptionsDeleted = 0
        var error: String?

        var drift: Int { mattersChanged + clientsChanged + (subscription == "recreated" ? 1 : 0) }

        enum CodingKeys: String, CodingKey {
            case outcome
            case mattersRead = "matters_read"
            case mattersChanged = "matters_changed"
            case mattersStale = "matters_stale"
            case contactsRead = "contacts_read"
            case clientsChanged = "clients_changed"
            case subscription
            case duplicateSubscriptionsDeleted = "duplicate_subscriptions_deleted"
            case error
        }
    }

    // MARK: Scheduling

    public func schedule(_ database: Database) throws -> TimeInterval {
        let row = try database.transaction { connection in
            try connection.execute(
                "SELECT scheduled, next_in_seconds FROM app_schedule_reconciliations($1::time)", [time.text]
            ).single()
        }
        return try row.double("next_in_seconds")
    }

    // MARK: A run

    public func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        let payload = try job.payload(Payload.self)
        let watermark = try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            return try Self.start(connection, payload.runID)
        }
        guard let watermark else {
            // Finished already (a re-run after the outcome was committed), or no such run.
            return ["outcome": "already_finished"]
        }
        var summary = Summary()
        do {
            try tokens.refreshAhead(context.scope)
            try ensureSubscription(&summary, payload.runID, context)
            try readMatters(since: watermark, &summary, payload.runID, context)
            try readContacts(since: watermark, &summary, payload.runID, context)
            summary.outcome = "succeeded"
        } catch let error as SmokeballTokenError where error.code == .needsReconnect || error.code == .notConnected {
            // Another attempt cannot help until the firm reconnects. Smokeball removes a firm's
            // subscriptions when its grant is revoked or its refresh token expires (FACTS.md),
            // which is what `invalid_grant` says: the recorded one is gone too.
            let lost = error.code == .needsReconnect && error.reason == "invalid_grant"
            summary.outcome = error.code == .needsReconnect ? "needs_reconnect" : "failed"
            summary.error = error.code.rawValue + (error.reason.map { ": " + $0 } ?? "")
            if lost { summary.subscription = "lost" }
            try finish(payload.runID, summary, subscriptionLost: lost, context)
            return summary
        } catch let error as WebhookSubscriptions.Failure where error.code == .notConnected {
            // Disconnected since the run was scheduled.
            summary.outcome = "failed"
            summary.error = error.code.rawValue
            try finish(payload.runID, summary, context)
            return summary
        } catch {
            let failure = SyncFailure.jobError(error, doing: "reconciling with Smokeball")
            let readable = JobError.readable(failure)
            if !readable.retryable || job.attempts >= job.maxAttempts {
                summary.outcome = "failed"
                summary.error = readable.description
                try finish(payload.runID, summary, context)
            }
            throw failure
        }
        try finish(payload.runID, summary, context)
        return summary
    }

    /// Records the run's outcome (and, with `subscriptionLost`, forgets the subscription).
    func finish(_ runID: UUID, _ summary: Summary, subscriptionLost: Bool = false, _ context: JobContext) throws {
        try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            if subscriptionLost { try Self.subscriptionLost(connection, runID) }
            try Self.finish(connection, runID, summary)
        }
    }

    /// Ensures the subscription (and asks for a noop, as every ensure does); one Smokeball never
    /// had, or dropped, is recreated and recorded as drift.
    func ensureSubscription(_ summary: inout Summary, _ runID: UUID, _ context: JobContext) throws {
        let ensured = try tokens.withAccess(context.scope) { client, access in
            try subscriptions.ensure(enter: context.scope.enter, client: client, access: access, lane: .background)
        }
        summary.subscription = ensured.created ? "recreated" : "kept"
        summary.duplicateSubscriptionsDeleted = ensured.duplicatesDeleted
        guard ensured.created else { return }
        try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            try SyncLog.record(
                connection, step: .subscription, outcome: .created, matterID: nil, externalID: ensured.subscriptionID,
                details: ["source": "reconciliation", "run_id": runID.uuidString.lowercased(), "reason": "missing"])
        }
    }

    /// The parts of a listed matter that reconciliation applies (the spec's `Matter`).
    struct ListedMatter: Decodable, Sendable {
        var id: String?
        var versionId: String?
        var status: String?
    }

    /// The query of a list of what changed since `watermark`, newest first: a record changed
    /// while the list is paged moves to the front, so offset paging can show one twice but never
    /// skips one (oldest first, a change would shift the rest back past the reader).
    static func changedSince(_ watermark: Date) -> [(String, String)] {
        [("UpdatedSince", String(DotNetTicks.from(watermark))), ("Sort", "lastUpdated desc")]
    }

    func readMatters(since watermark: Date, _ summary: inout Summary, _ runID: UUID, _ context: JobContext) throws {
        let counts = try tokens.withAccess(context.scope) { client, access in
            // A retry after a refused token starts the list again: count from zero.
            var counts = (read: 0, changed: 0, stale: 0)
            try client.forEachPage(
                "/matters", query: Self.changedSince(watermark), access: access, lane: .background
            ) { (page: [ListedMatter]) in
                counts.read += page.count
                let applied = try applyMatters(page, runID, context)
                counts.changed += applied.changed
                counts.stale += applied.stale
                return true
            }
            return counts
        }
        summary.mattersRead = counts.read
        summary.mattersChanged = counts.changed
        summary.mattersStale = counts.stale
    }

    /// One page of matters in one transaction: each linked one follows Smokeball.
    func applyMatters(_ page: [ListedMatter], _ runID: UUID, _ context: JobContext) throws -> (changed: Int, stale: Int)
    {
        let ids = page.compactMap(\.id)
        guard !ids.isEmpty else { return (0, 0) }
        return try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            try connection.execute("SELECT set_config('app.sync_origin', 'smokeball', true)")
            let linked = Set(
                try connection.execute(
                    """
                    SELECT smokeball_matter_id FROM matters
                    WHERE firm_id = app_current_firm() AND smokeball_matter_id = ANY (string_to_array($1, ','))
                      AND smokeball_link_status IS DISTINCT FROM 'failed'
                    """, [ids.joined(separator: ",")]
                ).rows.map { try $0.string("smokeball_matter_id") })
            var changed = 0
            var stale = 0
            for matter in page {
                guard let id = matter.id, linked.contains(id) else { continue }
                let applied = try WebhookEventJob.applyMatterState(
                    connection, id, WebhookEventJob.MatterState(versionId: matter.versionId, status: matter.status))
                if applied.result.status == .stale { stale += 1 }
                guard let drift = applied.drift else { continue }
                changed += 1
                try SyncLog.record(
                    connection, step: .matter, outcome: .reconciled, matterID: drift.matterID, externalID: id,
                    details: [
                        "source": "reconciliation", "run_id": runID.uuidString.lowercased(), "field": "status",
                        "from": drift.from, "to": drift.to,
                    ])
            }
            return (changed, stale)
        }
    }

    func readContacts(since watermark: Date, _ summary: inout Summary, _ runID: UUID, _ context: JobContext) throws {
        let counts = try tokens.withAccess(context.scope) { client, access in
            var counts = (read: 0, changed: 0)
            try client.forEachPage(
                "/contacts", query: Self.changedSince(watermark), access: access, lane: .background
            ) { (page: [SmokeballContact]) in
                counts.read += page.count
                counts.changed += try applyContacts(page, runID, context)
                return true
            }
            return counts
        }
        summary.contactsRead = counts.read
        summary.clientsChanged = counts.changed
    }

    /// One page of contacts in one transaction: every client linked to one follows it.
    func applyContacts(_ page: [SmokeballContact], _ runID: UUID, _ context: JobContext) throws -> Int {
        let ids = page.compactMap(\.id)
        guard !ids.isEmpty else { return 0 }
        return try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            try connection.execute("SELECT set_config('app.sync_origin', 'smokeball', true)")
            let linked = Set(
                try connection.execute(
                    """
                    SELECT DISTINCT smokeball_contact_id FROM clients
                    WHERE firm_id = app_current_firm() AND smokeball_contact_id = ANY (string_to_array($1, ','))
                    """, [ids.joined(separator: ",")]
                ).rows.map { try $0.string("smokeball_contact_id") })
            var changed = 0
            for contact in page {
                guard let id = contact.id, linked.contains(id) else { continue }
                for drift in try WebhookEventJob.applyContactState(connection, id, contact).drift {
                    changed += 1
                    try SyncLog.record(
                        connection, step: .contact, outcome: .reconciled, matterID: nil, externalID: id,
                        details: [
                            "source": "reconciliation", "run_id": runID.uuidString.lowercased(),
                            "client_id": drift.clientID.uuidString.lowercased(),
                            "fields": drift.fields.joined(separator: ","),
                        ])
                }
            }
            return changed
        }
    }

    // MARK: Database

    /// Marks the run running and returns its watermark: fixed by the first attempt (so a re-run
    /// reads the same span) as the last successful run's start, else the connection's time, less
    /// the margin. nil when the run is finished already (or unknown).
    static func start(_ connection: Connection, _ runID: UUID) throws -> Date? {
        try connection.execute(
            """
            UPDATE smokeball_reconciliations r SET status = 'running', started_at = coalesce(r.started_at, now()),
                watermark = coalesce(r.watermark, coalesce(
                    (SELECT p.started_at FROM smokeball_reconciliations p
                     WHERE p.firm_id = app_current_firm() AND p.status = 'succeeded' AND p.id <> r.id
                     ORDER BY p.run_date DESC LIMIT 1),
                    (SELECT i.connected_at FROM firm_integrations i
                     WHERE i.firm_id = app_current_firm() AND i.platform = 'smokeball'),
                    now()) - make_interval(secs => $2::float8))
            WHERE r.firm_id = app_current_firm() AND r.id = $1::uuid AND r.status IN ('pending', 'running')
            RETURNING r.watermark
            """, [runID, safetyMargin]
        ).first.map { try $0.date("watermark") }
    }

    static func finish(_ connection: Connection, _ runID: UUID, _ summary: Summary) throws {
        let json = String(decoding: try JSONEncoder().encode(summary), as: UTF8.self)
        try connection.execute(
            """
            UPDATE smokeball_reconciliations SET status = $2, finished_at = now(), matters_read = $3,
                contacts_read = $4, drift = $5, summary = $6::jsonb, error = $7
            WHERE firm_id = app_current_firm() AND id = $1::uuid
            """,
            [
                runID, summary.outcome, summary.mattersRead, summary.contactsRead, summary.drift, SQLValue.json(json),
                summary.error.map { String($0.prefix(1000)) },
            ])
    }

    /// The grant is gone, and the subscription with it: forget the recorded one (a reconnect
    /// ensures a new one) and say so in the history.
    static func subscriptionLost(_ connection: Connection, _ runID: UUID) throws {
        let recorded = try connection.execute(
            """
            SELECT webhook_subscription_id FROM firm_integrations
            WHERE firm_id = app_current_firm() AND platform = 'smokeball' FOR UPDATE
            """
        ).first.flatMap { try $0.optionalString("webhook_subscription_id") }
        try connection.execute(
            """
            UPDATE firm_integrations SET webhook_subscription_id = NULL, webhook_ensured_at = NULL, updated_at = now()
            WHERE firm_id = app_current_firm() AND platform = 'smokeball'
            """)
        try SyncLog.record(
            connection, step: .subscription, outcome: .failed, matterID: nil, externalID: recorded,
            details: ["source": "reconciliation", "run_id": runID.uuidString.lowercased()],
            error: "Smokeball refused the connection (invalid_grant): its webhook subscription is gone; reconnect")
    }
}

/// The time of day (UTC) reconciliation runs are scheduled at: `RECONCILIATION_TIME`, `HH:MM`
/// or `HH:MM:SS`, default 03:00.
public struct ReconciliationTime: Sendable, Equatable {
    public let hour: Int
    public let minute: Int
    public let second: Int

    public static let standard = ReconciliationTime(hour: 3, minute: 0, second: 0)
    public static let variable = "RECONCILIATION_TIME"

    public init(hour: Int, minute: Int, second: Int = 0) {
        self.hour = hour
        self.minute = minute
        self.second = second
    }

    /// `HH:MM` or `HH:MM:SS` (24-hour, UTC); nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3,
            parts.allSatisfy({ $0.count == 2 && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
            let hour = Int(parts[0]), let minute = Int(parts[1]), hour < 24, minute < 60
        else { return nil }
        let second = parts.count == 3 ? Int(parts[2]) ?? 60 : 0
        guard second < 60 else { return nil }
        self.init(hour: hour, minute: minute, second: second)
    }

    public static func fromEnvironment(_ environment: [String: String]) throws -> ReconciliationTime {
        guard let text = environment[variable], !text.isEmpty else { return .standard }
        guard let time = ReconciliationTime(text) else {
            throw ConfigurationError(variable: variable, problem: "must be HH:MM or HH:MM:SS (UTC)")
        }
        return time
    }

    /// As PostgreSQL's `time` reads it.
    var text: String { String(format: "%02d:%02d:%02d", hour, minute, second) }
}
