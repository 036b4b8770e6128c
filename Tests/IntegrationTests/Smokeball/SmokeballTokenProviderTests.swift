import Cryptography
import Foundation
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

#if canImport(Glibc)
    import Glibc
#endif

/// A firm connected to the sandbox: its tokens (from the sandbox's code flow) sealed in
/// `firm_integrations` as the callback stores them, and the counters the tests read. Refreshes
/// are counted where they happen: each one inserts one access token into the sandbox's `sb_tokens`.
struct ConnectedFirm {
    let sandbox: SmokeballSandbox
    let firm: Seed.FirmWithUsers
    let vault: TokenVault
    /// The tokens of the last `connect`.
    private(set) var tokens: TokenResponse

    static let refreshTokenLifetime: Double = 30 * 24 * 3600

    init(_ sandbox: SmokeballSandbox) throws {
        self.sandbox = sandbox
        firm = try Seed(sandbox.database).firmWithUsers("Token Firm")
        vault = try TokenVault(key: SecureRandom.bytes(32))
        tokens = try Self.signIn(sandbox)
        try connect(tokens, expiresIn: 3600)
    }

    static func signIn(_ sandbox: SmokeballSandbox) throws -> TokenResponse {
        let client = try sandbox.client(rateLimited: false)
        let verifier = PKCE.verifier()
        let code = try sandbox.signIn(
            client, state: "s-" + UUID().uuidString, challenge: PKCE.challenge(for: verifier))
        return try client.exchangeCode(code, redirectURI: SmokeballSandbox.redirectURI, codeVerifier: verifier)
    }

    var scope: UserScope { UserScope(userID: firm.admin) }

    /// Stores tokens as a (re)connect does, including the provider's reset of the health columns.
    mutating func connect(_ tokens: TokenResponse, expiresIn: Double) throws {
        self.tokens = tokens
        let refresh = try #require(tokens.refreshToken)
        try admin().execute(
            """
            INSERT INTO firm_integrations (firm_id, platform, access_token, refresh_token, token_expires_at,
                                           refresh_token_expires_at, is_active, region, smokeball_account_id)
            VALUES ($1, 'smokeball', $2, $3, now() + make_interval(secs => $4::float8),
                    now() + make_interval(secs => $5::float8), true, 'US', $6)
            ON CONFLICT (firm_id, platform) DO UPDATE
            SET access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,
                token_expires_at = EXCLUDED.token_expires_at,
                refresh_token_expires_at = EXCLUDED.refresh_token_expires_at, is_active = true,
                \(SmokeballTokenProvider.reconnectResetAssignments)
            """,
            [
                firm.id, SQLValue.bytes(try seal(tokens.accessToken, .accessToken)),
                SQLValue.bytes(try seal(refresh, .refreshToken)), expiresIn, Self.refreshTokenLifetime,
                sandbox.accountID,
            ])
    }

    func seal(_ token: String, _ column: TokenVault.Column) throws -> [UInt8] {
        try vault.seal(token, firmID: firm.id, platform: "smokeball", column: column)
    }

    /// Replaces the stored access token (its expiry `expiresIn` seconds from now).
    func storeAccessToken(_ token: String, expiresIn: Double) throws {
        try admin().execute(
            """
            UPDATE firm_integrations SET access_token = $2, token_expires_at = now() + make_interval(secs => $3::float8)
            WHERE firm_id = $1
            """, [firm.id, SQLValue.bytes(try seal(token, .accessToken)), expiresIn])
    }

    func setExpiry(in seconds: Double) throws {
        try admin().execute(
            "UPDATE firm_integrations SET token_expires_at = now() + make_interval(secs => $2::float8) WHERE firm_id = $1",
            [firm.id, seconds])
    }

    func admin() throws -> Connection { try sandbox.database.admin() }

    func row() throws -> Row {
        try admin().execute(
            """
            SELECT access_token, refresh_token, token_expires_at, refresh_token_expires_at, needs_reconnect_reason,
                   refresh_lease_id::text AS lease, refresh_failures,
                   coalesce(extract(epoch FROM refresh_not_before - now()), 0)::float8 AS backoff_left,
                   extract(epoch FROM token_expires_at - now())::float8 AS expires_in
            FROM firm_integrations WHERE firm_id = $1
            """, [firm.id]
        ).single()
    }

    func storedAccessToken() throws -> String {
        try vault.open(try row().bytes("access_token"), firmID: firm.id, platform: "smokeball", column: .accessToken)
    }

    /// Access tokens the sandbox has issued to the partner: one per refresh (and per code exchange).
    func accessTokensIssued() throws -> Int {
        Int(
            try Connection(url: sandbox.store.url).execute(
                "SELECT count(*) AS n FROM sb_tokens WHERE kind = 'access' AND client_id = $1",
                [SmokeballSandbox.clientID]
            ).single().int("n"))
    }

    /// A provider with its own database session, as each process has.
    func provider(_ policy: TokenPolicy = ConnectedFirm.policy) throws -> SmokeballTokenProvider {
        SmokeballTokenProvider(
            database: Database(url: sandbox.database.appURL), vault: vault, smokeball: try sandbox.configuration(),
            rateLimit: nil, policy: policy)
    }

    /// Quick retries inside a refresh; a long back-off, so that it is still running when the
    /// tests look (they end it by moving `refresh_not_before`, never by waiting).
    static let policy = TokenPolicy(
        backoffBase: 120, refreshRetry: RetryPolicy(maxAttempts: 2, baseDelay: 0.01, maxDelay: 0.02))
}

/// The token lifecycle against the sandbox over HTTP and real PostgreSQL: single-flight refresh,
/// the margin, the 401 retry, invalid_grant, a token endpoint that is down, leases.
@Suite(.serialized) struct SmokeballTokenProviderTests {
    @Test("fifty concurrent callers with their own sessions on an expired token make exactly one refresh")
    func singleFlight() throws {
        try SmokeballSandbox.with { sandbox in
            let connected = try ConnectedFirm(sandbox)
            try connected.setExpiry(in: -60)
            let before = try connected.row()
            let issued = try connected.accessTokensIssued()

            let callers = 50
            let results = Locked<[Result<(token: String, account: String?), any Error>]>([])
            let ready = DispatchGroup()
            let start = DispatchSemaphore(value: 0)
            let done = DispatchGroup()
            var threads: [Thread] = []
            for _ in 0..<callers {
                // Each caller opens its own session and client, as separate processes would.
                let provider = try connected.provider()
                let scope = connected.scope
                ready.enter()
                done.enter()
                let thread = Thread {
                    // Sessions open before the start, so the callers meet the expired token together.
                    _ = try? provider.database.withConnection { try $0.execute("SELECT 1") }
                    ready.leave()
                    start.wait()
                    let result = Result {
                        try provider.withAccess(scope) { client, access in
                            (token: access.accessToken, account: try client.firm(access).value.id)
                        }
                    }
                    provider.database.disconnect()
                    results.withLock { $0.append(result) }
                    done.leave()
                }
                thread.stackSize = 1 << 20
                threads.append(thread)
            }
            threads.forEach { $0.start() }
            ready.wait()
            let began = Date()
            for _ in 0..<callers { start.signal() }
            done.wait()
            let elapsed = Date().timeIntervalSince(began)

            let refreshes = try connected.accessTokensIssued() - issued
            let answers = try results.value.map { try $0.get() }
            let tokens = answers.map(\.token)
            #expect(answers.allSatisfy { $0.account == sandbox.accountID })
            print("token refresh: \(callers) concurrent callers -> \(refreshes) refresh(es) in \(elapsed) s")
            #expect(refreshes == 1)
            #expect(tokens.count == callers)
            let stored = try connected.storedAccessToken()
            #expect(Set(tokens) == [stored])
            #expect(stored != connected.tokens.accessToken)
            let after = try connected.row()
            #expect(try after.double("expires_in") > 3000)
            #expect(try after.optionalString("lease") == nil)
            // The refresh answer carries no refresh token and says nothing of its expiry: both stay.
            #expect(try after.bytes("refresh_token") == before.bytes("refresh_token"))
            #expect(try after.date("refresh_token_expires_at") == before.date("refresh_token_expires_at"))
        }
    }

    @Test("a token with less than the margin left is refreshed; one with more is used as it is")
    func refreshMargin() throws {
        try SmokeballSandbox.with { sandbox in
            let connected = try ConnectedFirm(sandbox)
            let issued = try connected.accessTokensIssued()
            let original = connected.tokens.accessToken
            try connected.setExpiry(in: 600)
            let used = try connected.provider().withAccess(connected.scope) { _, access in access.accessToken }
            #expect(used == original)
            #expect(try connected.accessTokensIssued() == issued)

            // 200 s left: inside the standard 5-minute margin, outside a 100 s one.
            try connected.setExpiry(in: 200)
            var smallMargin = ConnectedFirm.policy
            smallMargin.refreshMargin = 100
            #expect(try connected.provider(smallMargin).withAccess(connected.scope) { $1.accessToken } == original)
            #expect(try connected.accessTokensIssued() == issued)

            let refreshed = try connected.provider().withAccess(connected.scope) { client, access in
                _ = try client.firm(access)
                return access.accessToken
            }
            #expect(refreshed != original)
            #expect(try connected.accessTokensIssued() == issued + 1)
            #expect(try connected.row().double("expires_in") > 3000)
        }
    }

    @Test("a refused token is refreshed once and the call made again; a second refusal is thrown")
    func unauthorizedRetriesOnce() throws {
        try SmokeballSandbox.with { sandbox in
            let connected = try ConnectedFirm(sandbox)
            try connected.storeAccessToken("not-a-token-the-sandbox-knows", expiresIn: 3600)
            let provider = try connected.provider()
            var issued = try connected.accessTokensIssued()
            var calls = 0
            let firm = try provider.withAccess(connected.scope) { client, access in
                calls += 1
                return try client.firm(access).value.id
            }
            #expect(firm == sandbox.accountID)
            #expect(calls == 2)
            #expect(try connected.accessTokensIssued() == issued + 1)

            // Refused again after the refresh: thrown, and no further refresh.
            issued = try connected.accessTokensIssued()
            calls = 0
            do {
                _ = try provider.withAccess(connected.scope) { client, _ in
                    calls += 1
                    return try client.firm(.user("still-not-a-token")).value.id
                }
                Issue.record("a second refusal was not thrown")
            } catch let error as SmokeballError {
                #expect(error.code == .unauthorized)
            }
            #expect(calls == 2)
            #expect(try connected.accessTokensIssued() == issued + 1)
        }
    }

    @Test("a refused token that someone else has already replaced is not refreshed again")
    func unauthorizedAfterSomeoneElseRefreshed() throws {
        try SmokeballSandbox.with { sandbox in
            let connected = try ConnectedFirm(sandbox)
            try connected.storeAccessToken("not-a-token-the-sandbox-knows", expiresIn: 3600)
            let issued = try connected.accessTokensIssued()
            var calls = 0
            let firm = try connected.provider().withAccess(connected.scope) { client, access in
                calls += 1
                if calls == 1 {
                    // Another process refreshes and stores its token while this call is refused.
                    let other = try sandbox.client(rateLimited: false).refresh(
                        try #require(connected.tokens.refreshToken))
                    try connected.storeAccessToken(other.accessToken, expiresIn: 3600)
                }
                return try client.firm(access).value.id
            }
            #expect(firm == sandbox.accountID)
            #expect(calls == 2)
            // Only the other process's refresh.
            #expect(try connected.accessTokensIssued() == issued + 1)
        }
    }

    @Test("a revoked account: invalid_grant marks needs_reconnect, and later calls fail fast until a reconnect")
    func invalidGrantNeedsReconnect() throws {
        try SmokeballSandbox.with { sandbox in
            var connected = try ConnectedFirm(sandbox)
            let revoked = try sandbox.service.send(
                "POST", "/_sandbox/revoke", body: SmokeballSandbox.json(["account_id": sandbox.accountID]),
                contentType: "application/json", base: sandbox.url)
            try #require(revoked.status == 200)
            let provider = try connected.provider()
            let issued = try connected.accessTokensIssued()
            // The stored token is within its lifetime, so the call goes out, is refused (401), and
            // the refresh meets invalid_grant.
            var calls = 0
            #expect(throws: SmokeballTokenError(.needsReconnect, reason: "invalid_grant")) {
                try provider.withAccess(connected.scope) { client, access in
                    calls += 1
                    return try client.firm(access).value.id
                }
            }
            #expect(calls == 1)
            let marked = try connected.row()
            #expect(try marked.optionalString("needs_reconnect_reason") == "invalid_grant")
            #expect(try marked.optionalString("lease") == nil)

            // Were Smokeball asked now, it would answer: the grant is restored behind the
            // provider's back. The call still fails at once, and no token is issued.
            try Connection(url: sandbox.store.url).execute(
                "UPDATE sb_tokens SET revoked_at = NULL WHERE account_id = $1::uuid", [sandbox.accountID])
            try connected.setExpiry(in: -60)
            calls = 0
            do {
                _ = try provider.withAccess(connected.scope) { _, _ in calls += 1 }
                Issue.record("a connection that needs a reconnect was used")
            } catch let error as SmokeballTokenError {
                #expect(error.code == .needsReconnect && error.reason == "invalid_grant")
                #expect(error.httpError.status.code == 409 && error.httpError.code == "needs_reconnect")
                #expect(error.httpError.message.contains("invalid_grant"))
            }
            #expect(calls == 0)
            #expect(try connected.accessTokensIssued() == issued)

            // Reconnecting (fresh tokens, the reset assignments) makes the firm work again.
            try connected.connect(try ConnectedFirm.signIn(sandbox), expiresIn: 3600)
            #expect(try provider.withAccess(connected.scope) { try $0.firm($1).value.id } == sandbox.accountID)
            #expect(try connected.row().optionalString("needs_reconnect_reason") == nil)
        }
    }

    @Test(
        "a token endpoint that is down: the valid token serves, a lapsed one fails, nobody asks before the back-off ends"
    )
    func tokenEndpointDown() throws {
        try SmokeballSandbox.with { sandbox in
            let connected = try ConnectedFirm(sandbox)
            let provider = try connected.provider()
            let original = connected.tokens.accessToken
            try sandbox.addFault(["path_prefix": "/oauth2/token", "status": 500, "share": 1.0])

            // Inside the margin but valid: the refresh fails, the current token is used.
            try connected.setExpiry(in: 120)
            let used = try provider.withAccess(connected.scope) { client, access in
                _ = try client.firm(access)
                return access.accessToken
            }
            #expect(used == original)
            var row = try connected.row()
            #expect(try row.int("refresh_failures") == 1)
            #expect(try row.double("backoff_left") > 60)
            #expect(try row.optionalString("lease") == nil)

            // Lapsed during the back-off: fails at once with smokeball_unavailable, and the
            // token endpoint (working again) is not asked.
            try sandbox.clearFaults()
            try connected.setExpiry(in: -10)
            let issued = try connected.accessTokensIssued()
            var calls = 0
            do {
                _ = try provider.withAccess(connected.scope) { _, _ in calls += 1 }
                Issue.record("a lapsed token was used")
            } catch let error as SmokeballTokenError {
                #expect(error.code == .unavailable)
                #expect(error.httpError.status.code == 503 && error.httpError.code == "smokeball_unavailable")
            }
            #expect(calls == 0)
            #expect(try connected.accessTokensIssued() == issued)

            // Once the back-off is over, a lapsed token with the endpoint down: tried, fails,
            // and the next back-off is twice as long.
            try sandbox.addFault(["path_prefix": "/oauth2/token", "status": 500, "share": 1.0])
            try connected.admin().execute(
                "UPDATE firm_integrations SET refresh_not_before = now() - interval '1 second' WHERE firm_id = $1",
                [connected.firm.id])
            #expect(throws: SmokeballTokenError(.unavailable, detail: "unavailable")) {
                try provider.withAccess(connected.scope) { _, _ in calls += 1 }
            }
            row = try connected.row()
            #expect(try row.int("refresh_failures") == 2)
            #expect(try row.double("backoff_left") > 180)

            // A later call after the back-off, with the endpoint back: refreshed, counters reset.
            try sandbox.clearFaults()
            try connected.admin().execute(
                "UPDATE firm_integrations SET refresh_not_before = now() - interval '1 second' WHERE firm_id = $1",
                [connected.firm.id])
            let refreshed = try provider.withAccess(connected.scope) { try $0.firm($1).value.id }
            #expect(refreshed == sandbox.accountID)
            #expect(calls == 0)
            #expect(try connected.accessTokensIssued() == issued + 1)
            row = try connected.row()
            #expect(try row.int("refresh_failures") == 0)
            #expect(try row.double("backoff_left") == 0)
        }
    }

    @Test("a lapsed lease is taken over, a live one is waited for, and a valid token is used during someone's refresh")
    func leases() throws {
        try SmokeballSandbox.with { sandbox in
            let connected = try ConnectedFirm(sandbox)
            let provider = try connected.provider()
            func setLease(until seconds: Double) throws {
                try connected.admin().execute(
                    """
                    UPDATE firm_integrations SET refresh_lease_id = gen_random_uuid(),
                           refresh_lease_until = now() + make_interval(secs => $2::float8)
                    WHERE firm_id = $1
                    """, [connected.firm.id, seconds])
            }
            var issued = try connected.accessTokensIssued()

            // Someone is refreshing and the token still has 2 minutes: used, no wait, no refresh.
            try connected.setExpiry(in: 120)
            try setLease(until: 30)
            #expect(try provider.withAccess(connected.scope) { $1.accessToken } == connected.tokens.accessToken)
            #expect(try connected.accessTokensIssued() == issued)

            // A crashed holder's lapsed lease on a lapsed token: taken over.
            try connected.setExpiry(in: -10)
            try setLease(until: -1)
            #expect(try provider.withAccess(connected.scope) { try $0.firm($1).value.id } == sandbox.accountID)
            #expect(try connected.accessTokensIssued() == issued + 1)
            #expect(try connected.row().optionalString("lease") == nil)

            // A live lease whose holder never finishes: waited for until it lapses, then taken over.
            issued = try connected.accessTokensIssued()
            try connected.setExpiry(in: -10)
            try setLease(until: 1.5)
            #expect(try provider.withAccess(connected.scope) { try $0.firm($1).value.id } == sandbox.accountID)
            #expect(try connected.accessTokensIssued() == issued + 1)

            // A live lease outlasting the wait: smokeball_unavailable, nothing refreshed.
            issued = try connected.accessTokensIssued()
            try connected.setExpiry(in: -10)
            try setLease(until: 60)
            var short = ConnectedFirm.policy
            short.maximumWait = 0.3
            #expect(throws: SmokeballTokenError(.unavailable, detail: "refresh_wait_exceeded")) {
                try connected.provider(short).withAccess(connected.scope) { $1.accessToken }
            }
            #expect(try connected.accessTokensIssued() == issued)
        }
    }
}

extension SmokeballTokenProviderTests {
    @Test("refresh events are logged by firm id and never carry a token")
    func logsNameTheFirmOnly() throws {
        try SmokeballSandbox.with { sandbox in
            let connected = try ConnectedFirm(sandbox)
            let provider = try connected.provider()
            let firm = connected.firm.id.uuidString.lowercased()
            var seen: [String] = [connected.tokens.accessToken, try #require(connected.tokens.refreshToken)]
            let log = try Self.capturingStandardError {
                // A refresh, a failed one (endpoint down, token still valid), and invalid_grant.
                try connected.setExpiry(in: -10)
                _ = try provider.withAccess(connected.scope) { try $0.firm($1) }
                seen.append(try connected.storedAccessToken())
                try connected.setExpiry(in: 120)
                try sandbox.addFault(["path_prefix": "/oauth2/token", "status": 500, "share": 1.0])
                _ = try provider.withAccess(connected.scope) { $1.accessToken }
                try sandbox.clearFaults()
                try connected.admin().execute(
                    "UPDATE firm_integrations SET refresh_not_before = NULL WHERE firm_id = $1", [connected.firm.id])
                _ = try sandbox.service.send(
                    "POST", "/_sandbox/revoke", body: SmokeballSandbox.json(["account_id": sandbox.accountID]),
                    contentType: "application/json", base: sandbox.url)
                try connected.setExpiry(in: -10)
                #expect(throws: SmokeballTokenError.self) {
                    try provider.withAccess(connected.scope) { $1.accessToken }
                }
            }
            let lines = log.split(separator: "\n").filter { $0.contains(firm) }
            for event in ["smokeball_token_refreshed", "smokeball_token_refresh_failed", "smokeball_needs_reconnect"] {
                #expect(lines.contains { $0.contains("\"\(event)\"") }, "no \(event) line")
            }
            for token in seen { #expect(!log.contains(token)) }
        }
    }

    /// What this process writes to stderr (where `Logger` writes) while `body` runs.
    static func capturingStandardError(_ body: () throws -> Void) throws -> String {
        let path = NSTemporaryDirectory() + "token-log-" + UUID().uuidString
        let file = open(path, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        try #require(file >= 0)
        let saved = dup(STDERR_FILENO)
        dup2(file, STDERR_FILENO)
        defer {
            dup2(saved, STDERR_FILENO)
            close(saved)
            close(file)
            unlink(path)
        }
        try body()
        return try String(contentsOfFile: path, encoding: .utf8)
    }
}

/// What needs no sandbox: connections that are missing, settings, errors.
@Suite struct SmokeballTokenProviderLocalTests {
    static let configuration = SmokeballConfiguration(
        credentials: .init(clientID: "c", clientSecret: "s", apiKey: "k"), authBaseURLOverride: "http://127.0.0.1:9",
        apiBaseURLOverride: "http://127.0.0.1:9")

    @Test("a firm without an active connection gets not_connected, a server without credentials not_configured")
    func notConnected() throws {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let firm = try seed.firmWithUsers()
            let vault = try TokenVault(key: SecureRandom.bytes(32))
            let provider = SmokeballTokenProvider(
                database: Database(url: database.appURL), vault: vault, smokeball: Self.configuration, rateLimit: nil)
            let scope = UserScope(userID: firm.admin)
            #expect(throws: SmokeballTokenError(.notConnected)) { try provider.withAccess(scope) { _, _ in } }
            // A row with settings only (status wrote it), then a disconnected one.
            try seed.asFirm(firm.id) { connection in
                try connection.execute(
                    "INSERT INTO firm_integrations (firm_id, platform) VALUES ($1, 'smokeball')", [firm.id])
            }
            #expect(throws: SmokeballTokenError(.notConnected)) { try provider.withAccess(scope) { _, _ in } }
            try seed.asFirm(firm.id) { connection in
                try connection.execute(
                    """
                    UPDATE firm_integrations SET access_token = $2, token_expires_at = now() + interval '1 hour',
                           is_active = false WHERE firm_id = $1
                    """,
                    [
                        firm.id,
                        SQLValue.bytes(
                            try vault.seal("t", firmID: firm.id, platform: "smokeball", column: .accessToken)),
                    ])
            }
            #expect(throws: SmokeballTokenError(.notConnected)) { try provider.withAccess(scope) { _, _ in } }
            // Active with a lapsed access token and no refresh token: only a reconnect helps, and no
            // lease is taken (nobody would wait for a refresh that cannot happen).
            try seed.asFirm(firm.id) { connection in
                try connection.execute(
                    "UPDATE firm_integrations SET is_active = true, token_expires_at = now() - interval '1 minute' WHERE firm_id = $1",
                    [firm.id])
            }
            #expect(throws: SmokeballTokenError(.needsReconnect, reason: "no_refresh_token")) {
                try provider.withAccess(scope) { _, _ in }
            }
            #expect(
                try seed.connection.execute(
                    "SELECT refresh_lease_id FROM firm_integrations WHERE firm_id = $1", [firm.id]
                ).single().isNull("refresh_lease_id"))
            let error = SmokeballTokenError(.notConnected).httpError
            #expect(error.status.code == 409 && error.code == "not_connected")

            let unconfigured = SmokeballTokenProvider(
                database: Database(url: database.appURL), vault: vault,
                smokeball: SmokeballConfiguration(credentials: nil),
                rateLimit: nil)
            #expect(throws: SmokeballTokenError(.notConfigured)) { try unconfigured.withAccess(scope) { _, _ in } }
            #expect(SmokeballTokenError(.notConfigured).httpError.message == "Smokeball integration is not configured")
        }
    }

    @Test("the refresh margin comes from SMOKEBALL_REFRESH_MARGIN_SECONDS, and a bad value names the variable only")
    func marginFromEnvironment() throws {
        #expect(try TokenPolicy.fromEnvironment([:]).refreshMargin == 300)
        #expect(try TokenPolicy.fromEnvironment(["SMOKEBALL_REFRESH_MARGIN_SECONDS": "120"]).refreshMargin == 120)
        for bad in ["-1", "abc", "9999", "nan"] {
            do {
                _ = try TokenPolicy.fromEnvironment(["SMOKEBALL_REFRESH_MARGIN_SECONDS": bad])
                Issue.record("\(bad) was accepted")
            } catch {
                #expect(error.variable == "SMOKEBALL_REFRESH_MARGIN_SECONDS")
                #expect(!error.description.contains(bad))
            }
        }
    }

    @Test("the back-off after failed refreshes doubles and is capped")
    func backoffDoubles() {
        let policy = TokenPolicy(backoffBase: 5, backoffCap: 300)
        #expect((1...8).map { policy.backoff(afterFailures: $0) } == [5, 10, 20, 40, 80, 160, 300, 300])
        #expect(policy.backoff(afterFailures: 10_000) == 300)
    }

    @Test("errors describe themselves by code and reason only")
    func errorDescriptions() {
        #expect(
            SmokeballTokenError(.needsReconnect, reason: "invalid_grant").description
                == "SmokeballTokenError.needs_reconnect (invalid_grant)")
        let unavailable = SmokeballTokenError(.unavailable, detail: "timed_out")
        #expect(unavailable.description == "SmokeballTokenError.smokeball_unavailable")
        #expect(unavailable.httpError.status.code == 503)
    }
}
