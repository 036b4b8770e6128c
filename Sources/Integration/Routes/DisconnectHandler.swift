import FastCGI
import Foundation
import PostgreSQL
import Smokeball

/// `POST /api/v1/integrations/smokeball/disconnect`: a firm admin disconnects the firm's
/// Smokeball account. Smokeball documents no token revocation, so disconnecting is deleting the
/// firm's webhook subscription (best effort: a failure is reported and logged, not fatal) and
/// forgetting the tokens and the webhook key. Settings, links and history stay, so a reconnect
/// picks up where the firm left off. Idempotent.
///
/// Bearer token only, no session cookie: a cookie would let another site's form post here.
public struct DisconnectHandler: DatabaseHandler {
    public let route = "disconnect"
    public let database: Database
    let authenticator: Authenticator
    /// Nil when the server has no Smokeball credentials: the tokens are still forgotten.
    let tokens: SmokeballTokenProvider?
    let subscriptions: WebhookSubscriptions

    public init(
        authenticator: Authenticator, database: Database, tokens: SmokeballTokenProvider?,
        subscriptions: WebhookSubscriptions
    ) {
        self.authenticator = authenticator
        self.database = database
        self.tokens = tokens
        self.subscriptions = subscriptions
    }

    public init(configuration: Configuration) throws {
        let database = Database(
            url: configuration.databaseURL, applicationName: "casehug-disconnect",
            options: configuration.databaseOptions)
        let smokeball = try SmokeballConfiguration.fromEnvironment()
        let vault = try TokenVault(configuration: configuration)
        let policy = try TokenPolicy.fromEnvironment()
        self.init(
            authenticator: Authenticator(configuration: configuration), database: database,
            tokens: smokeball.credentials.map { credentials in
                SmokeballTokenProvider(
                    database: database, vault: vault, smokeball: smokeball,
                    rateLimit: PartnerRateLimit(
                        database: database, configuration: smokeball, clientID: credentials.clientID),
                    policy: policy)
            },
            subscriptions: WebhookSubscriptions(
                database: database, vault: vault, notificationURL: try OAuthRedirects.fromEnvironment().webhookURL))
    }

    struct Answer: Encodable {
        let connected = false
        let webhooksDeleted: Int
        let webhookErrors: [WebhookSubscriptions.RemovalError]

        enum CodingKeys: String, CodingKey {
            case connected
            case webhooksDeleted = "webhooks_deleted"
            case webhookErrors = "webhook_errors"
        }
    }

    public func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        guard request.method == "POST" else { throw HTTPError.methodNotAllowed(allowed: ["POST"]) }
        let userID = try authenticator.userID(for: request)
        let scope = UserScope(userID: userID)
        let current: (firmID: UUID, connected: Bool, subscriptionID: String?) = try database.transaction {
            connection in
            let caller = try Tenancy.enter(connection, userID: userID)
            guard caller.isFirmAdmin else {
                throw HTTPError(.forbidden, code: "forbidden", "Only firm administrators can disconnect Smokeball")
            }
            let row = try connection.execute(
                """
                SELECT is_active AND access_token IS NOT NULL AS connected, webhook_subscription_id
                FROM firm_integrations WHERE firm_id = app_current_firm() AND platform = 'smokeball'
                """
            ).first
            return (
                caller.firmID, try row?.bool("connected") ?? false, try row?.optionalString("webhook_subscription_id")
            )
        }
        var deleted = 0
        var errors: [WebhookSubscriptions.RemovalError] = []
        if current.connected {
            if let tokens {
                do {
                    let removed = try tokens.withAccess(scope) { client, access in
                        try subscriptions.remove(recordedID: current.subscriptionID, client: client, access: access)
                    }
                    deleted = removed.deleted
                    errors = removed.errors
                } catch {
                    errors.append(WebhookSubscriptions.RemovalError(error, subscriptionID: current.subscriptionID))
                }
            } else {
                errors.append(
                    WebhookSubscriptions.RemovalError(
                        SmokeballError(.notConfigured), subscriptionID: current.subscriptionID))
            }
        }
        try database.transaction { connection in
            _ = try scope.enter(connection)
            try connection.execute(Self.forget)
        }
        if !errors.isEmpty {
            context.log.warning(
                "webhook_delete_failed",
                [
                    "firm_id": current.firmID.uuidString.lowercased(),
                    "errors": errors.map(\.code).joined(separator: ","),
                ])
        }
        if current.connected {
            context.log.info(
                "smokeball_disconnected",
                ["firm_id": current.firmID.uuidString.lowercased(), "webhooks_deleted": deleted])
        }
        return try Response.json(encoding: Answer(webhooksDeleted: deleted, webhookErrors: errors))
    }

    /// Forgets everything that lets us act for the firm at Smokeball, and who it was, and frees
    /// the account for another firm. Leases are cleared too, so a refresh or an ensure still in
    /// flight finds its lease gone and stores nothing (the token provider's reset, as a reconnect
    /// uses it, clears the refresh lease, back-off and reconnect reason).
    static let forget = """
        UPDATE firm_integrations SET
            access_token = NULL, refresh_token = NULL, webhook_secret = NULL, previous_webhook_secret = NULL,
            webhook_secret_rotated_at = NULL, token_expires_at = NULL,
            refresh_token_expires_at = NULL, is_active = false, smokeball_account_id = NULL,
            account_info = '{}'::jsonb, webhook_subscription_id = NULL, webhook_event_types = '{}',
            webhook_ensured_at = NULL, webhook_ensure_lease_id = NULL, webhook_ensure_lease_until = NULL,
            updated_at = now(), \(SmokeballTokenProvider.reconnectResetAssignments)
        WHERE firm_id = app_current_firm() AND platform = 'smokeball'
        """
}
