import FastCGI
import Foundation
import PostgreSQL
import Smokeball

/// Who the database work is done for: binds the current transaction to one firm (row-level
/// security) and returns that firm's id. A user's request uses `UserScope`; a background worker
/// brings its own.
public protocol TenantScope: Sendable {
    func enter(_ connection: Connection) throws -> UUID
}

/// A signed-in user's firm, through `app_authenticate` (`Tenancy.enter`).
public struct UserScope: TenantScope {
    public let userID: UUID

    public init(userID: UUID) {
        self.userID = userID
    }

    public func enter(_ connection: Connection) throws -> UUID {
        try Tenancy.enter(connection, userID: userID).firmID
    }
}

/// The one way the integration gets a firm's Smokeball access token: every Smokeball call goes
/// through `withAccess`, which hands the call a valid token and refreshes it when needed.
///
/// - It refreshes when less than `policy.refreshMargin` remains, or once after Smokeball
///   answered 401/403 to the call (`SmokeballError.unauthorized`), unless someone else has
///   replaced the refused token meanwhile.
/// - Single flight across every process and host, with no lock or transaction held over the
///   HTTP call: a short transaction takes a lease on the firm's row (migration 028) and commits,
///   the holder calls the token endpoint, and a second short transaction stores the new sealed
///   token and clears the lease if it is still the holder's. Callers that find a live lease use
///   the current token while it is valid, else wait for the new one; a lapsed lease (crashed
///   holder) is taken over.
/// - `invalid_grant` sets `needs_reconnect_reason`; from then on calls fail at once with
///   `needs_reconnect` and nothing reaches Smokeball until the firm reconnects.
/// - A failing token endpoint is retried inside the refresh (`policy.refreshRetry`), then not
///   asked again before `refresh_not_before`, a delay that doubles with each consecutive failure.
///   Meanwhile the current token is used while valid; once lapsed, calls fail with
///   `smokeball_unavailable`.
///
/// A refresh stores nothing about the refresh token's expiry (Smokeball's answer does not carry
/// it), so `refresh_token_expires_at` stays what the connection set. Logs name the firm, never a
/// token. Do not call `withAccess` inside a transaction of the same `Database`.
public struct SmokeballTokenProvider: Sendable {
    public static let platform = "smokeball"

    /// What a reconnect (the OAuth callback storing fresh tokens) must also set, so that a firm
    /// marked `needs_reconnect` works again and no earlier refresh lease or back-off applies to
    /// the new tokens. Constant SQL (no values), for the callback's UPDATE/upsert of the firm's row.
    public static let reconnectResetAssignments = """
        needs_reconnect_reason = NULL, refresh_lease_id = NULL, refresh_lease_until = NULL, \
        refresh_not_before = NULL, refresh_failures = 0
        """

    public let database: Database
    let vault: TokenVault
    let smokeball: SmokeballConfiguration
    let rateLimit: PartnerRateLimit?
    public let policy: TokenPolicy
    let log: Logger

    public init(
        database: Database, vault: TokenVault, smokeball: SmokeballConfiguration, rateLimit: PartnerRateLimit?,
        policy: TokenPolicy = .standard, log: Logger = Logger(route: "smokeball-tokens")
    ) {
        self.database = database
        self.vault = vault
        self.smokeball = smokeball
        self.rateLimit = rateLimit
        self.policy = policy
        self.log = log
    }

    /// Runs `body` with a valid access token for the scope's firm and a client for the firm's
    /// region. When `body` throws `SmokeballError.unauthorized`, the token is refreshed (only if
    /// it is still the stored one) and `body` runs once more; a second refusal is thrown.
    public func withAccess<T>(_ scope: some TenantScope, _ body: (SmokeballClient, SmokeballAccess) throws -> T)
        throws -> T
    {
        guard smokeball.isConfigured else { throw SmokeballTokenError(.notConfigured) }
        var client: SmokeballClient?
        let first = try token(scope, refused: nil, client: &client)
        let firstClient = try self.client(for: first.region, reusing: client)
        do {
            return try body(firstClient, .user(first.accessToken))
        } catch let error as SmokeballError where error.code == .unauthorized {
            client = firstClient
            let second = try token(scope, refused: first, client: &client)
            return try body(try self.client(for: second.region, reusing: client), .user(second.accessToken))
        }
    }

    /// Refreshes the firm's access token now, however long it still has (the nightly
    /// reconciliation does, ahead of its calls): a revoked or expired grant is found at once
    /// (`invalid_grant` marks the firm `needs_reconnect` and is thrown), with nothing else sent to
    /// Smokeball. While someone else's refresh or a back-off is in force, the current token stays.
    public func refreshAhead(_ scope: some TenantScope) throws {
        guard smokeball.isConfigured else { throw SmokeballTokenError(.notConfigured) }
        var client: SmokeballClient?
        _ = try token(scope, refused: nil, client: &client, margin: .infinity)
    }

    // MARK: Finding a token

    /// An access token as stored: the sealed bytes identify it (sealing is randomised, so two
    /// stored tokens never share them).
    struct StoredToken {
        let firmID: UUID
        let sealed: [UInt8]
        let accessToken: String
        let region: SmokeballRegion
    }

    /// A lease this caller holds, and what it needs to refresh under it.
    struct Lease {
        let id: UUID
        /// The database's clock when the lease was taken: the new token cannot have been issued
        /// earlier, so its expiry counts from here (never later than Smokeball's).
        let takenAt: Date
        let refreshToken: String
        let failures: Int
        let current: StoredToken
        /// The current token may still be used if the refresh fails (valid, not refused).
        let currentUsable: Bool
    }

    enum Step {
        case use(StoredToken)
        case refresh(Lease)
        /// Someone else is refreshing and the current token cannot be used: look again shortly.
        case wait
        /// The row changed between reading it and taking the lease: look again now.
        case changed
    }

    /// `margin`: refresh when less than this remains (the policy's unless given).
    func token(
        _ scope: some TenantScope, refused: StoredToken?, client: inout SmokeballClient?, margin: TimeInterval? = nil
    ) throws -> StoredToken {
        let deadline = Date().addingTimeInterval(policy.maximumWait)
        var pause = policy.firstPoll
        while true {
            let step = try database.transaction { connection in
                try self.step(connection, scope, refused: refused, margin: margin ?? policy.refreshMargin)
            }
            switch step {
            case .use(let token):
                return token
            case .refresh(let lease):
                let refresher = try self.client(for: lease.current.region, reusing: client)
                client = refresher
                if let token = try refresh(lease, scope, client: refresher) { return token }
            case .wait, .changed:
                guard Date() < deadline else {
                    throw SmokeballTokenError(.unavailable, detail: "refresh_wait_exceeded")
                }
                if case .wait = step {
                    // Jitter keeps waiters from looking all at once.
                    Thread.sleep(forTimeInterval: pause + Double.random(in: 0...(pause / 2)))
                    pause = min(policy.maximumPoll, pause * 1.5)
                }
            }
        }
    }

    /// One short transaction: reads the firm's row and decides; takes the lease when this caller
    /// is to refresh.
    func step(_ connection: Connection, _ scope: some TenantScope, refused: StoredToken?, margin: TimeInterval)
        throws -> Step
    {
        let firmID = try scope.enter(connection)
        guard let row = try connection.execute(Self.readSQL, [Self.platform]).first, try row.bool("is_active"),
            let sealed = try row.optionalBytes("access_token")
        else { throw SmokeballTokenError(.notConnected) }
        if let reason = try row.optionalString("needs_reconnect_reason") {
            throw SmokeballTokenError(.needsReconnect, reason: reason)
        }
        let region = try row.optionalString("region").flatMap(SmokeballRegion.init(code:)) ?? smokeball.defaultRegion
        let current = StoredToken(
            firmID: firmID, sealed: sealed,
            accessToken: try vault.open(sealed, firmID: firmID, platform: Self.platform, column: .accessToken),
            region: region)
        // A refused token is refreshed only while it is still the stored one: otherwise someone
        // else already did, and the stored token is judged like any other.
        let isRefused = refused?.sealed == sealed
        let remaining = try row.double("remaining")
        if !isRefused && remaining > margin { return .use(current) }
        let usable = !isRefused && remaining > 0
        if try row.bool("backing_off") {
            if usable { return .use(current) }
            throw SmokeballTokenError(.unavailable, detail: "refresh_backing_off")
        }
        if try row.bool("lease_live") { return usable ? .use(current) : .wait }
        guard try row.bool("has_refresh_token") else {
            // Nothing to refresh with: only a reconnect helps.
            if usable { return .use(current) }
            throw SmokeballTokenError(.needsReconnect, reason: "no_refresh_token")
        }
        let id = UUID()
        guard
            let taken = try connection.execute(
                Self.takeLeaseSQL, [Self.platform, SQLValue.bytes(sealed), id, policy.lease]
            ).first
        else { return .changed }
        return .refresh(
            Lease(
                id: id, takenAt: try taken.date("taken_at"),
                refreshToken: try vault.open(
                    try taken.bytes("refresh_token"), firmID: firmID, platform: Self.platform, column: .refreshToken),
                failures: Int(try taken.int("refresh_failures")), current: current, currentUsable: usable))
    }

    /// Refreshes under `lease` with no transaction open, then records the outcome. Returns the
    /// token to use, or nil when the lease was lost and the row must be read again.
    func refresh(_ lease: Lease, _ scope: some TenantScope, client: SmokeballClient) throws -> StoredToken? {
        let firm = lease.current.firmID.uuidString.lowercased()
        let saved = (client.retryPolicy, client.requestTimeout)
        client.retryPolicy = policy.refreshRetry
        client.requestTimeout = policy.refreshTimeout
        defer { (client.retryPolicy, client.requestTimeout) = saved }
        let answer: TokenResponse
        do {
            answer = try client.refresh(lease.refreshToken)
        } catch let error as SmokeballError where error.code == .invalidGrant {
            let marked = try record(Self.invalidGrantSQL, [Self.platform, lease.id], scope)
            guard marked else { return nil }
            log.warning("smokeball_needs_reconnect", ["firm_id": firm, "reason": "invalid_grant"])
            throw SmokeballTokenError(.needsReconnect, reason: "invalid_grant")
        } catch let error as SmokeballError {
            let failures = lease.failures + 1
            let delay = policy.backoff(afterFailures: failures)
            _ = try record(Self.backOffSQL, [Self.platform, lease.id, delay], scope)
            log.warning(
                "smokeball_token_refresh_failed",
                [
                    "firm_id": firm, "error": error.code.rawValue, "failures": failures,
                    "next_attempt_in_seconds": delay, "using_current_token": lease.currentUsable,
                ])
            if lease.currentUsable { return lease.current }
            throw SmokeballTokenError(.unavailable, detail: error.code.rawValue)
        }
        let sealed = try vault.seal(
            answer.accessToken, firmID: lease.current.firmID, platform: Self.platform, column: .accessToken)
        // Smokeball answers no new refresh token; should one ever come, it replaces the old.
        let newRefresh = try answer.refreshToken.map {
            try vault.seal($0, firmID: lease.current.firmID, platform: Self.platform, column: .refreshToken)
        }
        let stored = try record(
            Self.storeSQL,
            [
                Self.platform, lease.id, SQLValue.bytes(sealed), lease.takenAt, Double(answer.expiresIn),
                newRefresh.map(SQLValue.bytes) ?? .null,
            ], scope)
        log.info("smokeball_token_refreshed", ["firm_id": firm, "expires_in": answer.expiresIn, "stored": stored])
        // Even when the lease lapsed meanwhile (and the token was not stored), it is valid.
        return StoredToken(
            firmID: lease.current.firmID, sealed: sealed, accessToken: answer.accessToken,
            region: lease.current.region)
    }

    /// One short transaction that writes under the lease; true when the lease was still held.
    private func record(_ sql: String, _ parameters: [any SQLValueConvertible], _ scope: some TenantScope) throws
        -> Bool
    {
        try database.transaction { connection in
            _ = try scope.enter(connection)
            return try connection.execute(sql, parameters).affectedRows == 1
        }
    }

    private func client(for region: SmokeballRegion, reusing client: SmokeballClient?) throws -> SmokeballClient {
        if let client, client.region == region { return client }
        return try SmokeballClient(configuration: smokeball, region: region, rateLimit: rateLimit)
    }

    // MARK: SQL (the clock is the database's, shared by every host)

    /// The firm's row: a token expiry that is NULL counts as lapsed.
    static let readSQL = """
        SELECT is_active, access_token, refresh_token IS NOT NULL AS has_refresh_token, region,
               needs_reconnect_reason,
               coalesce(extract(epoch FROM token_expires_at - now()), -1)::float8 AS remaining,
               coalesce(refresh_lease_until > now(), false) AS lease_live,
               coalesce(refresh_not_before > now(), false) AS backing_off
        FROM firm_integrations WHERE firm_id = app_current_firm() AND platform = $1
        """

    /// Takes the lease if the row still holds the token just read and nobody holds a live lease
    /// or a back-off. Concurrent takers queue on the row lock for the length of this one
    /// statement's transaction; the later ones then find the lease live and take nothing.
    static let takeLeaseSQL = """
        UPDATE firm_integrations
        SET refresh_lease_id = $3, refresh_lease_until = now() + make_interval(secs => $4::float8)
        WHERE firm_id = app_current_firm() AND platform = $1 AND is_active AND access_token = $2
          AND refresh_token IS NOT NULL AND needs_reconnect_reason IS NULL
          AND (refresh_lease_until IS NULL OR refresh_lease_until <= now())
          AND (refresh_not_before IS NULL OR refresh_not_before <= now())
        RETURNING refresh_token, refresh_failures, now() AS taken_at
        """

    /// The refreshed token, only under the holder's lease (a reconnect or a takeover since then
    /// wins). `refresh_token_expires_at` is left alone: a refresh does not extend it.
    static let storeSQL = """
        UPDATE firm_integrations
        SET access_token = $3, token_expires_at = $4::timestamptz + make_interval(secs => $5::float8),
            refresh_token = coalesce($6::bytea, refresh_token),
            refresh_lease_id = NULL, refresh_lease_until = NULL, refresh_not_before = NULL, refresh_failures = 0,
            updated_at = now()
        WHERE firm_id = app_current_firm() AND platform = $1 AND refresh_lease_id = $2
        """

    static let invalidGrantSQL = """
        UPDATE firm_integrations
        SET needs_reconnect_reason = 'invalid_grant', refresh_lease_id = NULL, refresh_lease_until = NULL,
            updated_at = now()
        WHERE firm_id = app_current_firm() AND platform = $1 AND refresh_lease_id = $2
        """

    static let backOffSQL = """
        UPDATE firm_integrations
        SET refresh_failures = refresh_failures + 1, refresh_not_before = now() + make_interval(secs => $3::float8),
            refresh_lease_id = NULL, refresh_lease_until = NULL
        WHERE firm_id = app_current_firm() AND platform = $1 AND refresh_lease_id = $2
        """
}
