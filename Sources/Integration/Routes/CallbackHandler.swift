import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import Smokeball

/// `GET /api/v1/integrations/smokeball/callback`: the browser coming back from Smokeball's sign-in
/// page with `code` and `state` (or `error`). The state is the capability: it is consumed once,
/// atomically, and names the firm and the admin who started the flow, so no JWT is needed; a
/// `casehug_session` cookie, when the browser sends one, must be that admin's.
///
/// Every outcome is a 302 to the configured return URL and nowhere else, with
/// `smokeball=connected` or `smokeball=error&reason=...`: a browser never sees JSON here, and
/// no parameter of the request can choose where it lands.
public struct CallbackHandler: DatabaseHandler {
    public let route = "callback"
    public let database: Database
    let authenticator: Authenticator
    let smokeball: SmokeballConfiguration
    let vault: TokenVault
    let redirects: OAuthRedirects
    let rateLimit: PartnerRateLimit?
    let subscriptions: WebhookSubscriptions
    /// Smokeball's retry rules for the calls made while the person waits.
    var retryPolicy = RetryPolicy.standard
    /// Smokeball's request time limit (the client's 30 s; tests shorten it).
    var requestTimeout: Double = 30

    public init(
        authenticator: Authenticator, database: Database, smokeball: SmokeballConfiguration, vault: TokenVault,
        redirects: OAuthRedirects, rateLimit: PartnerRateLimit?
    ) {
        self.authenticator = authenticator
        self.database = database
        self.smokeball = smokeball
        self.vault = vault
        self.redirects = redirects
        self.rateLimit = rateLimit
        subscriptions = WebhookSubscriptions(database: database, vault: vault, notificationURL: redirects.webhookURL)
    }

    /// Like `connect`: the key and `SITE_URL` are needed at start, Smokeball credentials are not
    /// (without them every callback lands on the return URL with `reason=not_configured`).
    public init(configuration: Configuration) throws {
        let database = Database(
            url: configuration.databaseURL, applicationName: "casehug-callback", options: configuration.databaseOptions)
        let smokeball = try SmokeballConfiguration.fromEnvironment()
        self.init(
            authenticator: Authenticator(configuration: configuration), database: database, smokeball: smokeball,
            vault: try TokenVault(configuration: configuration), redirects: try OAuthRedirects.fromEnvironment(),
            rateLimit: smokeball.credentials.map {
                PartnerRateLimit(database: database, configuration: smokeball, clientID: $0.clientID)
            })
    }

    /// Why a callback did not connect: the `reason` the return URL carries.
    public enum Reason: String, Sendable, Error, CaseIterable {
        /// Unknown, expired, reused or foreign state, another user's session, or a missing parameter.
        case invalidState = "invalid_state"
        /// The person chose "Deny" on Smokeball's page.
        case accessDenied = "access_denied"
        /// Smokeball's authorize step answered another OAuth error.
        case authorizationFailed = "authorization_failed"
        /// The code was refused (reused, expired, verifier mismatch) or the token did not work.
        case tokenExchangeFailed = "token_exchange_failed"
        /// Smokeball did not answer, answered 5xx or kept answering 429.
        case smokeballUnavailable = "smokeball_unavailable"
        /// The Smokeball account is connected to another CaseHug firm.
        case accountInUse = "account_in_use"
        /// The firm is connected to another Smokeball account: disconnect it first, so that its
        /// links and history are never mixed with a second account's ids.
        case differentAccount = "different_account"
        /// This server has no Smokeball credentials.
        case notConfigured = "not_configured"
        /// Our database could not be reached.
        case serviceUnavailable = "service_unavailable"
    }

    public func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        // GET only: a HEAD (a link checker, a mail scanner) must not spend the state.
        guard request.method == "GET" else { throw HTTPError.methodNotAllowed(allowed: ["GET"]) }
        do {
            let connected = try connect(request, log: context.log)
            return back(connected.webhooksEnsured ? [] : [("warning", "webhook_subscription_failed")])
        } catch {
            let reason = error
            context.log.warning("connect_failed", ["reason": reason.rawValue])
            return back([("reason", reason.rawValue)], error: true)
        }
    }

    /// The 302 to the return URL. No cache may keep it, and the page it leads to gets no
    /// Referer naming this URL (its query holds the code).
    func back(_ parameters: [(String, String)], error: Bool = false) -> Response {
        let query = [("smokeball", error ? "error" : "connected")] + parameters
        let url = redirects.returnURL + (redirects.returnURL.contains("?") ? "&" : "?") + FormURLEncoding.encode(query)
        var response = Response.redirect(to: url)  // `Cache-Control: no-store` included
        response.headers.append(("Referrer-Policy", "no-referrer"))
        return response
    }

    struct Connected {
        let firmID: UUID
        let webhooksEnsured: Bool
    }

    /// The state, as consumed.
    struct ConsumedState {
        let firmID: UUID
        let userID: UUID
        let sealedVerifier: [UInt8]
        let region: SmokeballRegion
    }

    func connect(_ request: Request, log: Logger) throws(Reason) -> Connected {
        // One of each: a repeated parameter is a request nobody's browser makes.
        func single(_ name: String) -> String? {
            let values = request.queryValues(name)
            return values.count == 1 && !values[0].isEmpty && values[0].utf8.count <= 4096 ? values[0] : nil
        }
        guard let stateText = single("state"), let stateBytes = Base64URL.decode(stateText), stateBytes.count == 32
        else { throw .invalidState }
        let state = try consume(stateBytes)
        if request.cookie(Authenticator.sessionCookie) != nil {
            // The browser that comes back must be the one that left, when it says who it is.
            guard let sessionUser = try? authenticator.userID(for: request, acceptingSessionCookie: true),
                sessionUser == state.userID
            else {
                log.warning("callback_session_mismatch", ["firm_id": state.firmID.uuidString.lowercased()])
                throw .invalidState
            }
        }
        if let error = request.queryValues("error").first {
            throw error == "access_denied" ? .accessDenied : .authorizationFailed
        }
        guard let code = single("code") else { throw .invalidState }
        guard smokeball.credentials != nil else { throw .notConfigured }
        let verifier: String
        do {
            verifier = try vault.open(
                state.sealedVerifier, firmID: state.firmID, platform: "smokeball", column: .codeVerifier)
        } catch {
            log.error("callback_verifier_unreadable", ["firm_id": state.firmID.uuidString.lowercased()])
            throw .invalidState
        }
        let client: SmokeballClient
        do {
            client = try SmokeballClient(
                configuration: smokeball, region: state.region, rateLimit: rateLimit, retryPolicy: retryPolicy)
            client.requestTimeout = requestTimeout
        } catch {
            throw .notConfigured
        }
        let issuedAt = Date()
        let tokens: TokenResponse
        do {
            tokens = try client.exchangeCode(code, redirectURI: redirects.redirectURI, codeVerifier: verifier)
        } catch {
            throw Self.reason(for: error, log: log, step: "token_exchange")
        }
        guard let refreshToken = tokens.refreshToken, !refreshToken.isEmpty else { throw .tokenExchangeFailed }
        let access = SmokeballAccess.user(tokens.accessToken)
        let account: Firm
        do {
            account = try client.firm(access).value
        } catch {
            throw Self.reason(for: error, log: log, step: "read_firm")
        }
        guard let accountID = account.id, !accountID.isEmpty else { throw .tokenExchangeFailed }
        // Who signed in: the token's user, found among the firm's staff. Only for display, so a
        // failure here does not stop the connection.
        var staff: Staff?
        if let userID = AccessTokenClaims.userID(tokens.accessToken) {
            do {
                staff = try client.staffMember(userID: userID, access: access)
            } catch {
                log.warning("callback_staff_unreadable", ["firm_id": state.firmID.uuidString.lowercased()])
            }
        }
        try store(
            state: state, tokens: tokens, refreshToken: refreshToken, issuedAt: issuedAt, accountID: accountID,
            account: account, staff: staff, log: log)
        log.info(
            "smokeball_connected",
            ["firm_id": state.firmID.uuidString.lowercased(), "region": state.region.rawValue, "account_id": accountID])
        do {
            try subscriptions.ensure(
                enter: { try Tenancy.enter($0, userID: state.userID).firmID }, client: client, access: access)
            return Connected(firmID: state.firmID, webhooksEnsured: true)
        } catch {
            // The worker tries again in the background (with back-off) rather than leaving the
            // firm connected without webhooks.
            let retried =
                (try? database.transaction { connection in
                    _ = try Tenancy.enter(connection, userID: state.userID)
                    return try EnsureWebhookSubscriptionJob.enqueue(connection)
                }) != nil
            log.error(
                "webhook_subscription_failed",
                [
                    "firm_id": state.firmID.uuidString.lowercased(), "error": String(describing: Self.safe(error)),
                    "retry_enqueued": retried,
                ])
            return Connected(firmID: state.firmID, webhooksEnsured: false)
        }
    }

    /// Spends the state whatever happens next: it is single use even when the flow fails later.
    func consume(_ stateBytes: [UInt8]) throws(Reason) -> ConsumedState {
        let row: Row?
        do {
            row = try database.transaction { connection in
                try connection.execute(
                    "SELECT firm_id, user_id, code_verifier, region FROM app_consume_oauth_state($1)",
                    [SHA256.hash(stateBytes)]
                ).first
            }
        } catch {
            throw .serviceUnavailable
        }
        guard let row,
            let consumed = try? ConsumedState(
                firmID: row.uuid("firm_id"), userID: row.uuid("user_id"), sealedVerifier: row.bytes("code_verifier"),
                region: SmokeballRegion(code: row.string("region")) ?? smokeball.defaultRegion)
        else { throw .invalidState }
        return consumed
    }

    /// Seals and stores the connection. The same firm reconnecting keeps its settings, links and
    /// history; another firm's account is refused by the unique account index (which row-level
    /// security cannot hide).
    func store(
        state: ConsumedState, tokens: TokenResponse, refreshToken: String, issuedAt: Date, accountID: String,
        account: Firm, staff: Staff?, log: Logger
    ) throws(Reason) {
        var info: [String: String] = ["account_id": accountID]
        if let name = account.name { info["firm_name"] = name }
        if let staff {
            let name = [staff.firstName, staff.lastName].compactMap { $0 }.joined(separator: " ")
            if !name.isEmpty { info["user_name"] = name }
            if let email = staff.email { info["user_email"] = email }
            if let id = staff.id { info["staff_id"] = id }
        }
        let infoJSON =
            (try? JSONSerialization.data(withJSONObject: info, options: [.sortedKeys]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        let webhookKey = Hex.encode(SecureRandom.bytes(32))
        do {
            try database.transaction { connection in
                let caller = try Tenancy.enter(connection, userID: state.userID)
                // Between connect and now the admin may have left the firm or lost the role.
                guard caller.firmID == state.firmID, caller.isFirmAdmin else { throw Reason.invalidState }
                let firm = caller.firmID
                let current = try connection.execute(Self.connectedAccount).first
                if let current, let connected = try current.optionalString("smokeball_account_id"),
                    connected != accountID
                {
                    throw Reason.differentAccount
                }
                func seal(_ value: String, _ column: TokenVault.Column) throws -> [UInt8] {
                    try vault.seal(value, firmID: firm, platform: "smokeball", column: column)
                }
                // Deliveries signed with the key being replaced may still be in flight: it stays
                // valid for a grace period (migration 035), sealed under its own column's name.
                var previousKey: [UInt8]?
                if let current, let sealed = try current.optionalBytes("webhook_secret"),
                    let key = try? vault.open(sealed, firmID: firm, platform: "smokeball", column: .webhookSecret)
                {
                    previousKey = try seal(key, .previousWebhookSecret)
                }
                try connection.execute(
                    Self.upsert,
                    [
                        firm, try seal(tokens.accessToken, .accessToken), try seal(refreshToken, .refreshToken),
                        issuedAt.addingTimeInterval(TimeInterval(tokens.expiresIn)),
                        issuedAt.addingTimeInterval(smokeball.refreshTokenLifetime),
                        try seal(webhookKey, .webhookSecret), accountID, infoJSON, state.region.rawValue, caller.userID,
                        previousKey,
                    ])
            }
        } catch let reason as Reason {
            throw reason
        } catch is HTTPError {
            // The user is gone or has no firm any more.
            throw .invalidState
        } catch let error as DatabaseError where error.sqlState == "23505" {
            log.warning(
                "smokeball_account_in_use", ["firm_id": state.firmID.uuidString.lowercased(), "account_id": accountID])
            throw .accountInUse
        } catch let error as DatabaseError {
            log.error("callback_store_failed", ["error": error.description])
            throw error.isUnavailable || error.isTimeout ? .serviceUnavailable : .tokenExchangeFailed
        } catch {
            log.error("callback_store_failed", ["error": String(describing: Self.safe(error))])
            throw .tokenExchangeFailed
        }
    }

    /// The account the firm is connected to now and its webhook key (locked until the upsert decides).
    static let connectedAccount = """
        SELECT smokeball_account_id, webhook_secret FROM firm_integrations
        WHERE firm_id = app_current_firm() AND platform = 'smokeball' AND is_active AND access_token IS NOT NULL
        FOR UPDATE
        """

    /// A reconnect replaces tokens, key and account details and clears what an earlier failure
    /// left (the reconnect reason, refresh back-off); settings, links and history stay. The
    /// recorded subscription is kept only for the same Smokeball account.
    static let upsert = """
        INSERT INTO firm_integrations (
            firm_id, platform, access_token, refresh_token, token_expires_at, refresh_token_expires_at, is_active,
            webhook_secret, smokeball_account_id, account_info, region, connected_by, connected_at,
            needs_reconnect_reason, previous_webhook_secret, webhook_secret_rotated_at)
        VALUES ($1, 'smokeball', $2, $3, $4, $5, true, $6, $7, $8::jsonb, $9, $10, now(), NULL, $11,
            CASE WHEN $11::bytea IS NOT NULL THEN now() END)
        ON CONFLICT (firm_id, platform) DO UPDATE SET
            access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,
            token_expires_at = EXCLUDED.token_expires_at, refresh_token_expires_at = EXCLUDED.refresh_token_expires_at,
            is_active = true, webhook_secret = EXCLUDED.webhook_secret,
            previous_webhook_secret = EXCLUDED.previous_webhook_secret,
            webhook_secret_rotated_at = EXCLUDED.webhook_secret_rotated_at,
            webhook_subscription_id = CASE
                WHEN firm_integrations.smokeball_account_id = EXCLUDED.smokeball_account_id
                THEN firm_integrations.webhook_subscription_id END,
            smokeball_account_id = EXCLUDED.smokeball_account_id, account_info = EXCLUDED.account_info,
            region = EXCLUDED.region, connected_by = EXCLUDED.connected_by, connected_at = now(),
            updated_at = now(), \(SmokeballTokenProvider.reconnectResetAssignments)
        """

    /// The reason for a failed Smokeball call: an outage or a refusal.
    static func reason(for error: any Error, log: Logger, step: String) -> Reason {
        guard let error = error as? SmokeballError else {
            log.error("callback_failed", ["step": step, "error": String(describing: safe(error))])
            return error is DatabaseError ? .serviceUnavailable : .smokeballUnavailable
        }
        log.warning("callback_smokeball_error", ["step": step, "error": error.description])
        switch error.code {
        case .unavailable, .timedOut, .connectionFailed, .rateLimited: return .smokeballUnavailable
        case .notConfigured: return .notConfigured
        case .unauthorized, .notFound, .rejected, .invalidResponse, .invalidGrant, .tokenRefused:
            return .tokenExchangeFailed
        }
    }

    /// Errors whose description is known to hold no secret; anything else is named by type only.
    static func safe(_ error: any Error) -> any Error {
        switch error {
        case is SmokeballError, is DatabaseError, is WebhookSubscriptions.Failure, is HTTPError: error
        default: UnnamedError(type: String(describing: type(of: error)))
        }
    }

    struct UnnamedError: Error, CustomStringConvertible {
        let type: String
        var description: String { "an error of type \(type)" }
    }
}
