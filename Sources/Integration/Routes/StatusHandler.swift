import FastCGI
import Foundation
import PostgreSQL

/// `GET /api/v1/integrations/smokeball/status`: the caller's firm's connection, Smokeball account,
/// token expiry, settings and last sync event. `PUT`/`PATCH`: update the settings (firm admins).
public struct StatusHandler: Handler {
    public let route = "status"
    let authenticator: Authenticator
    let database: Database
    static let platform = "smokeball"

    public init(authenticator: Authenticator, database: Database) {
        self.authenticator = authenticator
        self.database = database
    }

    public init(configuration: Configuration) {
        self.init(
            authenticator: Authenticator(configuration: configuration),
            database: Database(url: configuration.databaseURL, applicationName: "casehug-status"))
    }

    public func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        switch request.method {
        case "GET", "HEAD":
            let userID = try authenticator.userID(for: request)
            // Authenticate and the status query travel in one round trip, as one implicit
            // transaction. If the user is unknown or has no firm, app_authenticate set no firm and
            // row-level security gave the status query nothing; the caller check below answers
            // 401/403.
            let results = try database.pipelinedRead([
                Tenancy.authenticate(userID), Statement(Self.statusQuery, [Self.platform]),
            ])
            let caller = try Tenancy.caller(from: results[0], userID: userID)
            return Response.json(try Self.status(from: results[1].single(), caller: caller))
        case "PUT", "PATCH":
            let userID = try authenticator.userID(for: request)
            // The body is checked for shape before any database work; field values that need the
            // catalogue (case types) are checked inside the transaction, before anything is written.
            let body = try request.jsonObject()
            let mode: IntegrationSettings.UpdateMode = request.method == "PUT" ? .replace : .merge
            return try database.transaction { connection in
                let caller = try Tenancy.enter(connection, userID: userID)
                guard caller.isFirmAdmin else {
                    throw HTTPError(.forbidden, code: "forbidden", "Only firm administrators can change these settings")
                }
                let current = try Self.lockedSettings(connection)
                let updated = try current.applying(body, mode: mode, knownCaseTypes: try Self.caseTypes(connection))
                try connection.execute(
                    """
                    INSERT INTO firm_integrations (firm_id, platform, settings)
                    VALUES (app_current_firm(), $1, $2::jsonb)
                    ON CONFLICT (firm_id, platform)
                    DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()
                    """, [Self.platform, SQLValue.json(updated.jsonText)])
                context.log.info("settings_updated", ["firm_id": caller.firmID.uuidString.lowercased()])
                return Response.json(try Self.status(connection, caller: caller))
            }
        default:
            throw HTTPError.methodNotAllowed(allowed: ["GET", "HEAD", "PUT", "PATCH"])
        }
    }

    /// The settings row locked for the rest of the transaction, so concurrent PATCHes of
    /// different mappings both survive.
    static func lockedSettings(_ connection: Connection) throws -> IntegrationSettings {
        let row = try connection.execute(
            "SELECT settings FROM firm_integrations WHERE platform = $1 FOR UPDATE", [platform]
        ).first
        guard let row, let stored = try row.json("settings") as? [String: Any] else { return .defaults }
        return IntegrationSettings(stored: stored)
    }

    static func caseTypes(_ connection: Connection) throws -> Set<String> {
        Set(try connection.execute("SELECT key FROM case_types").rows.map { try $0.string("key") })
    }

    /// The caller's integration row (if any) with its latest sync event, as exactly one row.
    /// Row-level security limits both tables to the caller's firm.
    static let statusQuery = """
        SELECT i.is_active, i.access_token IS NOT NULL AS has_token, i.token_expires_at,
               i.refresh_token_expires_at, i.settings, i.smokeball_account_id, i.account_info, i.region,
               i.connected_at, i.id IS NOT NULL AS has_integration,
               s.action AS sync_action, s.status AS sync_status, s.matter_id AS sync_matter_id,
               s.upload_id AS sync_upload_id, s.external_id AS sync_external_id,
               s.error_message AS sync_error_message, s.created_at AS sync_created_at
        FROM (SELECT 1) AS one
        LEFT JOIN firm_integrations i ON i.platform = $1
        LEFT JOIN LATERAL (
            SELECT action, status, matter_id, upload_id, external_id, error_message, created_at
            FROM integration_sync_logs l WHERE l.integration_id = i.id
            ORDER BY l.created_at DESC LIMIT 1
        ) s ON true
        """

    /// The answer for a successful update, read in the update's transaction.
    static func status(_ connection: Connection, caller: Caller) throws -> [String: Any] {
        try status(from: try connection.execute(statusQuery, [platform]).single(), caller: caller)
    }

    /// The answer from `statusQuery`'s row.
    static func status(from row: Row, caller: Caller) throws -> [String: Any] {
        let integration: Row? = try row.bool("has_integration") ? row : nil
        let lastSync: Row? = try row.optionalString("sync_action") != nil ? row : nil
        var settings = IntegrationSettings.defaults
        var answer: [String: Any] = [
            "platform": platform, "firm_id": caller.firmID.uuidString.lowercased(),
            "can_manage_settings": caller.isFirmAdmin,
        ]
        if let integration {
            if let stored = try integration.json("settings") as? [String: Any] {
                settings = IntegrationSettings(stored: stored)
            }
            let connected = try integration.bool("is_active") && integration.bool("has_token")
            let refreshExpiry = try integration.optionalDate("refresh_token_expires_at")
            answer["connected"] = connected
            answer["needs_reconnect"] = connected && (refreshExpiry.map { $0 <= Date() } ?? false)
            answer["token_expires_at"] =
                connected ? JSONValues.timestamp(try integration.optionalDate("token_expires_at")) : NSNull()
            answer["refresh_token_expires_at"] = connected ? JSONValues.timestamp(refreshExpiry) : NSNull()
            answer["connected_at"] =
                connected ? JSONValues.timestamp(try integration.optionalDate("connected_at")) : NSNull()
            if connected {
                var account = (try integration.json("account_info") as? [String: Any]) ?? [:]
                account["account_id"] = JSONValues.orNull(try integration.optionalString("smokeball_account_id"))
                account["region"] = JSONValues.orNull(try integration.optionalString("region"))
                answer["smokeball"] = account
            } else {
                answer["smokeball"] = NSNull()
            }
        } else {
            answer["connected"] = false
            answer["needs_reconnect"] = false
            answer["token_expires_at"] = NSNull()
            answer["refresh_token_expires_at"] = NSNull()
            answer["connected_at"] = NSNull()
            answer["smokeball"] = NSNull()
        }
        answer["settings"] = settings.jsonObject
        if let lastSync {
            answer["last_sync"] = [
                "action": try lastSync.string("sync_action"),
                "status": try lastSync.string("sync_status"),
                "matter_id": JSONValues.orNull(try lastSync.optionalUUID("sync_matter_id")?.uuidString.lowercased()),
                "upload_id": JSONValues.orNull(try lastSync.optionalUUID("sync_upload_id")?.uuidString.lowercased()),
                "external_id": JSONValues.orNull(try lastSync.optionalString("sync_external_id")),
                "error_message": JSONValues.orNull(try lastSync.optionalString("sync_error_message")),
                "created_at": JSONValues.timestamp(try lastSync.date("sync_created_at")),
            ]
        } else {
            answer["last_sync"] = NSNull()
        }
        return answer
    }
}
