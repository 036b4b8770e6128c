import FastCGI
import Foundation
import PostgreSQL
import Smokeball

/// `GET /api/v1/integrations/smokeball/status`: the caller's firm's connection, Smokeball account,
/// token expiry, settings and last sync event. `PUT`/`PATCH`: update the settings (firm admins).
public struct StatusHandler: DatabaseHandler {
    public let route = "status"
    let authenticator: Authenticator
    public let database: Database
    /// The firm's matter types for `include=mappings` and the check of `case_type_mappings`; nil
    /// in a status route without Smokeball (mappings then answer `not_configured`).
    let matterTypes: MatterTypeCatalogue?
    static let platform = "smokeball"

    public init(authenticator: Authenticator, database: Database, matterTypes: MatterTypeCatalogue? = nil) {
        self.authenticator = authenticator
        self.database = database
        self.matterTypes = matterTypes
    }

    public init(configuration: Configuration) {
        self.init(
            authenticator: Authenticator(configuration: configuration),
            database: Database(
                url: configuration.databaseURL, applicationName: "casehug-status",
                options: configuration.databaseOptions))
    }

    /// The route's: with the server's Smokeball credentials, the firm's matter types are read
    /// through the token provider (single-flight refresh, the partner's rate limit, waiting at
    /// most `rateLimitWait` for its turn: a person is waiting).
    public init(configuration: Configuration, smokeball: SmokeballConfiguration, rateLimitWait: Double = 5) throws {
        let database = Database(
            url: configuration.databaseURL, applicationName: "casehug-status", options: configuration.databaseOptions)
        let tokens = try smokeball.credentials.map { credentials in
            SmokeballTokenProvider(
                database: database, vault: try TokenVault(configuration: configuration), smokeball: smokeball,
                rateLimit: PartnerRateLimit(
                    database: database, clientID: credentials.clientID, ratePerSecond: smokeball.ratePerSecond,
                    burst: smokeball.burst, maximumWait: rateLimitWait),
                policy: try TokenPolicy.fromEnvironment(), log: Logger(route: "status"))
        }
        self.init(
            authenticator: Authenticator(configuration: configuration), database: database,
            matterTypes: MatterTypeCatalogue(resolver: MatterTypeResolver(database: database), tokens: tokens))
    }

    /// The route executable's handler: the Smokeball settings from the environment.
    public static func route(_ configuration: Configuration) throws -> StatusHandler {
        try StatusHandler(configuration: configuration, smokeball: .fromEnvironment())
    }

    public func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        switch request.method {
        case "GET", "HEAD":
            let userID = try authenticator.userID(for: request)
            let mappings = try MappingsQuery(request)
            // Authenticate and the status query travel in one round trip, as one implicit
            // transaction. If the user is unknown or has no firm, app_authenticate set no firm and
            // row-level security gave the status query nothing; the caller check below answers
            // 401/403. Mappings add the cached matter types and the case types to the same trip.
            var statements = [Tenancy.authenticate(userID), Statement(Self.statusQuery)]
            if mappings != nil {
                statements += [Statement(MatterTypeResolver.cachedSQL), Statement(CaseTypeRow.sql)]
            }
            let results = try database.pipelinedRead(statements)
            let caller = try Tenancy.caller(from: results[0], userID: userID)
            var answer = try Self.status(from: results[1].single(), caller: caller)
            if let mappings {
                answer.mappings = try self.mappings(
                    answer, cached: try results[2].first.flatMap(MatterTypeResolver.cached(from:)),
                    caseTypes: try results[3].rows.map(CaseTypeRow.init), refresh: mappings.refresh,
                    scope: UserScope(userID: userID))
            }
            return try Response.json(encoding: answer)
        case "PUT", "PATCH":
            let userID = try authenticator.userID(for: request)
            // The body is checked for shape before any database work; field values that need the
            // catalogue (case types) are checked inside the transaction, before anything is written.
            let body = try request.jsonObject()
            let mode: IntegrationSettings.UpdateMode = request.method == "PUT" ? .replace : .merge
            // Mapping values are checked against the firm's matter types, read (perhaps from
            // Smokeball) before the transaction: no transaction is held over a request to Smokeball.
            let types = try typesForUpdate(body, mode: mode, userID: userID)
            return try database.transaction { connection in
                let caller = try Tenancy.enter(connection, userID: userID)
                guard caller.isFirmAdmin else { throw Self.notFirmAdmin }
                let current = try Self.lockedSettings(connection)
                let caseTypes = try CaseTypeRow.all(connection)
                let updated = try current.applying(body, mode: mode, knownCaseTypes: Set(caseTypes.map(\.key)))
                if let types { try Self.checkMappings(body, updated, in: types, caseTypes: caseTypes) }
                try connection.execute(
                    """
                    UPDATE firm_integrations SET settings = $2::jsonb, updated_at = now()
                    WHERE firm_id = app_current_firm() AND platform = $1
                    """, [Self.platform, SQLValue.json(updated.jsonText)])
                context.log.info("settings_updated", ["firm_id": caller.firmID.uuidString.lowercased()])
                return try Response.json(encoding: Self.status(connection, caller: caller))
            }
        default:
            throw HTTPError.methodNotAllowed(allowed: ["GET", "HEAD", "PUT", "PATCH"])
        }
    }

    /// The settings row locked for the rest of the transaction, so concurrent PATCHes of
    /// different mappings both survive. A firm's first write creates the row before locking it:
    /// `FOR UPDATE` locks nothing when there is no row yet, and two first writes would each start
    /// from the defaults and the later would overwrite the earlier. The insert of the second waits
    /// on the first's uncommitted row instead, then reads what the first committed.
    static func lockedSettings(_ connection: Connection) throws -> IntegrationSettings {
        try connection.execute(
            """
            INSERT INTO firm_integrations (firm_id, platform) VALUES (app_current_firm(), $1)
            ON CONFLICT (firm_id, platform) DO NOTHING
            """, [platform])
        let row = try connection.execute(
            "SELECT settings FROM firm_integrations WHERE firm_id = app_current_firm() AND platform = $1 FOR UPDATE",
            [platform]
        ).single()
        guard let stored = try row.json("settings") as? [String: Any] else { return .defaults }
        return IntegrationSettings(stored: stored)
    }

    /// The caller's integration row (if any) with its latest sync event, as exactly one row.
    /// Row-level security limits both tables to the caller's firm; the `firm_id` predicates say
    /// so again, so the answer stays the caller's even if a policy were missing or bypassed.
    ///
    /// It takes no parameter (the platform is a constant): PostgreSQL then always reuses the
    /// prepared statement's generic plan. With one, it plans each execution anew while a custom
    /// plan looks cheaper than the generic one, which with the inbound parts cost 1.2 to 1.7 ms
    /// of planning per request (EXPLAIN ANALYZE EXECUTE, November 2026) against 0.01 ms.
    static let statusQuery = """
        SELECT i.is_active, i.access_token IS NOT NULL AS has_token, i.token_expires_at,
               sm.reconciliation_run_date::text AS reconciliation_run_date, sm.reconciliation_status,
               sm.reconciliation_started_at, sm.reconciliation_finished_at, sm.reconciliation_matters_read,
               sm.reconciliation_contacts_read, sm.reconciliation_drift, sm.reconciliation_error,
               i.refresh_token_expires_at, i.settings, i.smokeball_account_id, i.account_info, i.region,
               i.connected_at, i.id IS NOT NULL AS has_integration, i.needs_reconnect_reason,
               i.webhook_subscription_id, array_to_string(i.webhook_event_types, ',') AS webhook_event_types,
               i.webhook_ensured_at, i.connected_by, cb.full_name AS connected_by_name,
               cb.email AS connected_by_email,
               s.action AS sync_action, s.status AS sync_status, s.matter_id AS sync_matter_id,
               s.upload_id AS sync_upload_id, s.external_id AS sync_external_id,
               s.error_message AS sync_error_message, s.created_at AS sync_created_at,
               \(Self.inboundColumns)
        FROM (SELECT 1) AS one
        LEFT JOIN firm_integrations i ON i.platform = '\(platform)' AND i.firm_id = app_current_firm()
        LEFT JOIN LATERAL (
            SELECT u.full_name, u.email FROM users u WHERE u.id = i.connected_by AND u.firm_id = app_current_firm()
        ) cb ON true
        LEFT JOIN LATERAL (
            SELECT action, status, matter_id, upload_id, external_id, error_message, created_at
            FROM integration_sync_logs l WHERE l.integration_id = i.id AND l.firm_id = app_current_firm()
            ORDER BY l.created_at DESC LIMIT 1
        ) s ON true
        \(Self.inboundJoins)
        """

    /// The answer for a successful update, read in the update's transaction.
    static func status(_ connection: Connection, caller: Caller) throws -> StatusAnswer {
        try status(from: try connection.execute(statusQuery).single(), caller: caller)
    }

    /// A refresh token expiring sooner than this shows as `reconnect_by` (Smokeball's last 30 days).
    static let reconnectWarning: TimeInterval = 7 * 24 * 3600

    /// The answer from `statusQuery`'s row.
    static func status(from row: Row, caller: Caller, now: Date = Date()) throws -> StatusAnswer {
        var answer = StatusAnswer(
            platform: platform, firmID: caller.firmID, canManageSettings: caller.isFirmAdmin, connected: false,
            needsReconnect: false, needsReconnectReason: nil, reconnectBy: nil, tokenExpiresAt: nil,
            refreshTokenExpiresAt: nil, connectedAt: nil, connectedBy: nil, smokeball: nil, webhookSubscription: nil,
            settings: .defaults, lastSync: nil, lastWebhook: nil, webhookEvents: .init(pending: 0, failed: 0),
            webhookDelivery: .init(noopSentAt: nil, noopArrivedAt: nil), importProgress: nil,
            failedLinks: .init(matters: 0, contacts: 0, latest: nil))
        if try row.bool("has_integration") {
            if let stored = try row.json("settings") as? [String: Any] {
                answer.settings = IntegrationSettings(stored: stored)
            }
            if try row.bool("is_active") && row.bool("has_token") {
                let refreshExpiry = try row.optionalDate("refresh_token_expires_at")
                let info = try row.json("account_info") as? [String: Any] ?? [:]
                let expired = refreshExpiry.map { $0 <= now } ?? false
                let reason =
                    try row.optionalString("needs_reconnect_reason") ?? (expired ? "refresh_token_expired" : nil)
                answer.connected = true
                answer.needsReconnect = reason != nil
                answer.needsReconnectReason = reason
                answer.reconnectBy = refreshExpiry.flatMap { expiry in
                    !expired && expiry.timeIntervalSince(now) <= Self.reconnectWarning ? expiry : nil
                }
                answer.tokenExpiresAt = try row.optionalDate("token_expires_at")
                answer.refreshTokenExpiresAt = refreshExpiry
                answer.connectedAt = try row.optionalDate("connected_at")
                answer.connectedBy = try row.optionalUUID("connected_by").map { user in
                    StatusAnswer.User(
                        userID: user, name: try row.optionalString("connected_by_name"),
                        email: try row.optionalString("connected_by_email"))
                }
                answer.smokeball = StatusAnswer.Account(
                    accountID: try row.optionalString("smokeball_account_id"), region: try row.optionalString("region"),
                    firmName: info["firm_name"] as? String, userName: info["user_name"] as? String,
                    userEmail: info["user_email"] as? String)
                answer.webhookSubscription = try row.optionalString("webhook_subscription_id").map { id in
                    StatusAnswer.Subscription(
                        id: id,
                        eventTypes: (try row.optionalString("webhook_event_types") ?? "").split(separator: ",")
                            .map(String.init),
                        ensuredAt: try row.optionalDate("webhook_ensured_at"))
                }
            }
        }
        answer.lastReconciliation = try StatusAnswer.LastReconciliation(row)
        try inbound(from: row, into: &answer)
        if let action = try row.optionalString("sync_action") {
            answer.lastSync = StatusAnswer.LastSync(
                action: action, status: try row.string("sync_status"), matterID: try row.optionalUUID("sync_matter_id"),
                uploadID: try row.optionalUUID("sync_upload_id"),
                externalID: try row.optionalString("sync_external_id"),
                errorMessage: try row.optionalString("sync_error_message"), createdAt: try row.date("sync_created_at"))
        }
        return answer
    }
}

/// The status route's answer. Absent values are `null`, never missing keys.
struct StatusAnswer: Encodable, Equatable {
    struct Account: Encodable, Equatable {
        var accountID: String?
        var region: String?
        /// From `account_info`, what the callback stored about the connected Smokeball firm and user.
        var firmName: String?
        var userName: String?
        var userEmail: String?

        enum CodingKeys: String, CodingKey {
            case accountID = "account_id"
            case region
            case firmName = "firm_name"
            case userName = "user_name"
            case userEmail = "user_email"
        }
    }

    struct LastSync: Encodable, Equatable {
        var action: String
        var status: String
        var matterID: UUID?
        var uploadID: UUID?
        var externalID: String?
        var errorMessage: String?
        var createdAt: Date

        enum CodingKeys: String, CodingKey {
            case action, status
            case matterID = "matter_id"
            case uploadID = "upload_id"
            case externalID = "external_id"
            case errorMessage = "error_message"
            case createdAt = "created_at"
        }
    }

    /// The firm's latest nightly reconciliation (`smokeball_reconciliations`): counts only.
    struct LastReconciliation: Encodable, Equatable {
        /// The UTC day it is the run of (`YYYY-MM-DD`).
        var runDate: String
        /// `pending`, `running`, `succeeded`, `failed`, `needs_reconnect`.
        var status: String
        var startedAt: Date?
        var finishedAt: Date?
        var mattersRead: Int
        var contactsRead: Int
        /// CaseHug rows changed and subscriptions recreated: what webhooks had missed.
        var drift: Int
        var error: String?

        enum CodingKeys: String, CodingKey {
            case runDate = "run_date"
            case status
            case startedAt = "started_at"
            case finishedAt = "finished_at"
            case mattersRead = "matters_read"
            case contactsRead = "contacts_read"
            case drift, error
        }

        /// From `statusQuery`'s `reconciliation_` columns; nil when the firm has had no run.
        init?(_ row: Row) throws {
            guard let status = try row.optionalString("reconciliation_status") else { return nil }
            runDate = try row.string("reconciliation_run_date")
            self.status = status
            startedAt = try row.optionalDate("reconciliation_started_at")
            finishedAt = try row.optionalDate("reconciliation_finished_at")
            mattersRead = Int(try row.int("reconciliation_matters_read"))
            contactsRead = Int(try row.int("reconciliation_contacts_read"))
            drift = Int(try row.int("reconciliation_drift"))
            error = try row.optionalString("reconciliation_error")
        }
    }

    /// Who connected the firm.
    struct User: Encodable, Equatable {
        var userID: UUID
        var name: String?
        var email: String?

        enum CodingKeys: String, CodingKey {
            case userID = "user_id"
            case name, email
        }
    }

    /// The firm's webhook subscription at Smokeball, as last ensured.
    struct Subscription: Encodable, Equatable {
        var id: String
        var eventTypes: [String]
        var ensuredAt: Date?

        enum CodingKeys: String, CodingKey {
            case id
            case eventTypes = "event_types"
            case ensuredAt = "ensured_at"
        }
    }

    var platform: String
    var firmID: UUID
    var canManageSettings: Bool
    var connected: Bool
    var needsReconnect: Bool
    /// Why: `refresh_token_expired`, or what the connection recorded (`invalid_grant`, ...).
    var needsReconnectReason: String?
    /// When the refresh token runs out, once that is less than `reconnectWarning` away.
    var reconnectBy: Date?
    var tokenExpiresAt: Date?
    var refreshTokenExpiresAt: Date?
    var connectedAt: Date?
    var connectedBy: User?
    var smokeball: Account?
    var webhookSubscription: Subscription?
    var settings: IntegrationSettings
    var lastSync: LastSync?
    var lastReconciliation: LastReconciliation? = nil
    // Inbound (StatusHandler+Inbound.swift).
    var lastWebhook: LastWebhook?
    var webhookEvents: WebhookEvents
    var webhookDelivery: WebhookDelivery
    var importProgress: ImportProgress?
    var failedLinks: FailedLinks
    /// With `include=mappings` (StatusHandler+Mappings.swift).
    var mappings: Mappings? = nil

    enum CodingKeys: String, CodingKey {
        case platform
        case firmID = "firm_id"
        case canManageSettings = "can_manage_settings"
        case connected
        case needsReconnect = "needs_reconnect"
        case needsReconnectReason = "needs_reconnect_reason"
        case reconnectBy = "reconnect_by"
        case tokenExpiresAt = "token_expires_at"
        case refreshTokenExpiresAt = "refresh_token_expires_at"
        case connectedAt = "connected_at"
        case connectedBy = "connected_by"
        case smokeball
        case webhookSubscription = "webhook_subscription"
        case settings
        case lastSync = "last_sync"
        case lastReconciliation = "last_reconciliation"
        case lastWebhook = "last_webhook"
        case webhookEvents = "webhook_events"
        case webhookDelivery = "webhook_delivery"
        case importProgress = "import"
        case failedLinks = "failed_links"
        case mappings
    }
}
