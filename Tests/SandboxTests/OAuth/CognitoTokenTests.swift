import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// Access tokens shaped like Cognito's: JWTs whose claims say who signed in, so an integration
/// can find the signing-in staff member as it must on real Smokeball.
@Suite struct CognitoTokenTests {
    typealias F = SandboxFixture

    /// The payload of a JWT, read without verifying (as the integration reads it).
    static func claims(_ token: String) -> [String: Any] {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = Base64URL.decode(parts[1]) else { return [:] }
        return (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any] ?? [:]
    }

    static func signingKey(_ fixture: F) throws -> [UInt8] {
        try Connection(url: fixture.databaseURL).execute("SELECT secret FROM sb_signing_key").single().bytes("secret")
    }

    static func storedDigests(_ fixture: F, _ token: String) throws -> Int64 {
        try Connection(url: fixture.databaseURL).execute(
            "SELECT count(*) AS n FROM sb_tokens WHERE token_sha256 = $1", [SHA256.hash(Array(token.utf8))]
        ).single().int("n")
    }

    @Test func aUserAccessTokenIsACognitoJWTNamingTheStaffMemberWhoSignedIn() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, refresh) = fixture.connect()
        // Signed with the sandbox's key (HS256).
        let verified = try JWT.verifyHS256(
            access, secret: try Self.signingKey(fixture), now: Int64(Date().timeIntervalSince1970))
        let claims = Self.claims(access)
        #expect(verified.subject == claims["sub"] as? String)
        #expect(claims["token_use"] as? String == "access")
        #expect(claims["client_id"] as? String == F.clientID)
        #expect(claims["iss"] as? String == "http://sandbox.test")
        #expect(claims["version"] as? Int == 2)
        #expect(claims["scope"] is String)
        let issuedAt = try #require(claims["iat"] as? Int)
        #expect(claims["exp"] as? Int == issuedAt + 3600)
        #expect(claims["auth_time"] as? Int == issuedAt)
        for uuid in ["jti", "origin_jti", "event_id"] {
            #expect(UUID(uuidString: claims[uuid] as? String ?? "") != nil, "\(uuid)")
        }

        // `username` (and `sub`) is the signing-in user's id: the `userId` of their staff member.
        let staff = F.json(fixture.api("GET", "/staff", token: access))["value"] as? [[String: Any]] ?? []
        let member = try #require(staff.first { $0["email"] as? String == F.email })
        #expect(claims["username"] as? String == member["userId"] as? String)
        #expect(claims["sub"] as? String == member["userId"] as? String)
        // As on Smokeball, the staff member's own id is another: looking the user up by it fails.
        let staffID = try #require(member["id"] as? String)
        #expect(staffID != member["userId"] as? String)
        #expect(
            fixture.api("GET", "/staff/" + (claims["username"] as? String ?? ""), token: access).status == .notFound)
        #expect(fixture.api("GET", "/staff/" + staffID, token: access).status == .ok)

        // Only the digest is stored, and it is what authenticates the call.
        #expect(try Self.storedDigests(fixture, access) == 1)

        // A refresh keeps the sign-in's claims and makes a new, different token.
        let refreshed = F.json(fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)]))
        let again = try #require(refreshed["access_token"] as? String)
        let renewed = Self.claims(again)
        #expect(again != access)
        #expect(renewed["jti"] as? String != claims["jti"] as? String)
        for kept in ["username", "sub", "origin_jti", "event_id"] {
            #expect(renewed[kept] as? String == claims[kept] as? String, "\(kept)")
        }
        #expect(renewed["auth_time"] as? Int == issuedAt)
        #expect(fixture.api("GET", "/firm", token: again).status == .ok)
        // Refresh tokens stay opaque.
        #expect(!refresh.contains("."))
    }

    @Test func aClientCredentialsTokenNamesTheClientAndNoUser() throws {
        let fixture = try F()
        let first = F.json(fixture.token([("grant_type", "client_credentials")]))["access_token"] as? String ?? ""
        let second = F.json(fixture.token([("grant_type", "client_credentials")]))["access_token"] as? String ?? ""
        let claims = Self.claims(first)
        #expect(claims["sub"] as? String == F.clientID)
        #expect(claims["client_id"] as? String == F.clientID)
        #expect(claims["token_use"] as? String == "access")
        #expect(claims["username"] == nil)
        #expect(claims["origin_jti"] == nil)
        #expect(claims["scope"] is String)
        // Issued in the same second, still unique (`jti`).
        #expect(first != second)
        #expect(try Self.storedDigests(fixture, first) == 1)
    }
}

/// The request log keeps every call to the token endpoint with its grant type and status, so
/// tests can count token requests, and never what was sent in it.
@Suite struct TokenRequestLogTests {
    typealias F = SandboxFixture

    static func tokenLog(_ fixture: F, query: [String: String] = [:]) -> [[String: Any]] {
        F.json(fixture.call("GET", "/_sandbox/requests", query: ["path": "/oauth2/token"].merging(query) { $1 }))[
            "requests"] as? [[String: Any]] ?? []
    }

    @Test func everyTokenCallIsLoggedWithItsGrantTypeAndStatusAndNothingSecret() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        let (_, query) = fixture.authorize(challenge: Secrets.s256Challenge(verifier: verifier))
        let code = try #require(query["code"])
        let exchange = [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", F.redirectURI),
            ("code_verifier", verifier),
        ]
        let tokens = F.json(fixture.token(exchange))
        let access = try #require(tokens["access_token"] as? String)
        let refresh = try #require(tokens["refresh_token"] as? String)
        #expect(fixture.token(exchange).status == .badRequest)  // the code again: invalid_grant
        #expect(fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)]).status == .ok)
        #expect(fixture.token([("grant_type", "refresh_token"), ("refresh_token", "not-one")]).status == .badRequest)
        // A wrong secret still counts against the partner it names.
        let wrong = fixture.token(
            [("grant_type", "client_credentials")], authorization: F.basic(F.clientID, "wrong-secret"))
        #expect(wrong.status == .unauthorized)
        #expect(fixture.token([("grant_type", "password")]).status == .badRequest)
        _ = fixture.admin("POST", "/_sandbox/faults", ["path_prefix": "/oauth2/token", "status": 500])
        #expect(fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)]).status.code == 500)
        _ = fixture.admin("DELETE", "/_sandbox/faults")
        // An API call is logged as before, without a grant type.
        #expect(fixture.api("GET", "/firm", token: access).status == .ok)

        let log = Self.tokenLog(fixture)
        #expect(
            log.map { $0["grant_type"] as? String } == [
                "authorization_code", "authorization_code", "refresh_token", "refresh_token", "client_credentials",
                nil, "refresh_token",
            ])
        #expect(log.map { $0["status"] as? Int } == [200, 400, 200, 400, 401, 400, 500])
        #expect(log.allSatisfy { $0["client_id"] as? String == F.clientID && $0["method"] as? String == "POST" })
        let refreshes = Self.tokenLog(fixture, query: ["grant_type": "refresh_token"])
        #expect(refreshes.map { $0["status"] as? Int } == [200, 400, 500])
        let all = F.json(fixture.admin("GET", "/_sandbox/requests"))["requests"] as? [[String: Any]] ?? []
        #expect(all.count == 8)
        #expect(all.last?["path"] as? String == "/firm" && all.last?["grant_type"] is NSNull)

        let counters = F.json(fixture.call("GET", "/_sandbox/counters", query: ["client_id": F.clientID]))
        #expect(
            counters["by_grant_type"] as? [String: Int] == [
                "authorization_code": 2, "refresh_token": 3, "client_credentials": 1,
            ])
        #expect((counters["by_grant_type_status"] as? [String: Int])?["refresh_token 200"] == 1)
        #expect((counters["by_path"] as? [String: Int])?["POST /oauth2/token"] == 7)

        // What was sent is nowhere in the log.
        let everything = F.text(fixture.admin("GET", "/_sandbox/requests"))
        let stored = try Connection(url: fixture.databaseURL).execute(
            "SELECT string_agg(t::text, ' ') AS s FROM sb_requests t"
        ).single().string("s")
        for secret in [code, refresh, access, verifier, F.clientSecret, "wrong-secret", "not-one"] {
            #expect(!everything.contains(secret) && !stored.contains(secret))
        }
    }

    @Test func aCallWithoutAKnownPartnerIsLoggedWithoutOne() throws {
        let fixture = try F()
        let stranger = fixture.token([("grant_type", "client_credentials")], authorization: F.basic("nobody", "x"))
        #expect(stranger.status == .unauthorized)
        let log = Self.tokenLog(fixture)
        #expect(log.count == 1)
        #expect(log.first?["client_id"] is NSNull)
        #expect(log.first?["grant_type"] as? String == "client_credentials")
    }
}

/// Admin: tokens expire now, so tests can make Smokeball refuse a token the integration still
/// believes valid, and make a refresh token lapse.
@Suite struct ExpireTokensTests {
    typealias F = SandboxFixture

    static func subscribe(_ fixture: F, _ access: String) throws {
        _ = try WebhooksTests.subscribe(fixture, token: access, url: "https://hooks.test/casehug")
    }

    static func subscriptions(_ fixture: F) throws -> Int64 {
        try Connection(url: fixture.databaseURL).execute("SELECT count(*) AS n FROM sb_webhook_subscriptions")
            .single().int("n")
    }

    @Test func expiredAccessTokensAre401AndARefreshGivesAWorkingOne() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, refresh) = fixture.connect()
        try Self.subscribe(fixture, access)
        let account = fixture.accountID.uuidString.lowercased()
        let expired = fixture.admin("POST", "/_sandbox/expire-tokens", ["account_id": account, "kind": "access"])
        #expect(expired.status == .ok)
        #expect(F.json(expired)["expired"] as? Int == 1)
        #expect(F.json(expired)["subscriptions_removed"] as? Int == 0)
        // Its `exp` claim is still an hour away; Smokeball refuses it all the same.
        let exp = try #require(CognitoTokenTests.claims(access)["exp"] as? Int)
        #expect(Double(exp) > fixture.now.timeIntervalSince1970 + 3000)
        #expect(fixture.api("GET", "/firm", token: access).status == .unauthorized)
        let renewed = F.json(fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)]))
        let again = try #require(renewed["access_token"] as? String)
        #expect(fixture.api("GET", "/firm", token: again).status == .ok)
        #expect(try Self.subscriptions(fixture) == 1)
    }

    /// A lapsed refresh token is `invalid_grant`, and (FACTS.md) its subscriptions go with it.
    @Test func anExpiredRefreshTokenIsInvalidGrantAndItsSubscriptionsGo() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, refresh) = fixture.connect()
        try Self.subscribe(fixture, access)
        let expired = fixture.admin(
            "POST", "/_sandbox/expire-tokens",
            ["account_id": fixture.accountID.uuidString.lowercased(), "kind": "refresh", "client_id": F.clientID])
        #expect(F.json(expired)["expired"] as? Int == 1)
        #expect(F.json(expired)["subscriptions_removed"] as? Int == 1)
        #expect(try Self.subscriptions(fixture) == 0)
        let refused = fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)])
        #expect(refused.status == .badRequest)
        #expect(F.json(refused)["error"] as? String == "invalid_grant")
        // The access token lives out its hour, as Cognito's would.
        #expect(fixture.api("GET", "/firm", token: access).status == .ok)
    }

    @Test func aPartnersClientCredentialsTokensExpireByClientID() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        _ = fixture.connect()
        let server = F.json(fixture.token([("grant_type", "client_credentials")]))["access_token"] as? String ?? ""
        let path = "/\(fixture.accountID.uuidString.lowercased())/firm"
        #expect(fixture.api("GET", path, token: server).status == .ok)
        let expired = fixture.admin("POST", "/_sandbox/expire-tokens", ["client_id": F.clientID, "kind": "access"])
        #expect(F.json(expired)["expired"] as? Int == 2)
        #expect(fixture.api("GET", path, token: server).status == .unauthorized)
    }

    @Test(
        arguments: [
            ["kind": "access"],
            ["kind": "id", "client_id": F.clientID],
            ["client_id": F.clientID],
            ["kind": "access", "account_id": "not-a-uuid"],
            ["kind": "access", "client_id": ""],
        ] as [[String: any Sendable]])
    func badExpireRequestsAreRefused(body: [String: any Sendable]) throws {
        let fixture = try F()
        #expect(fixture.admin("POST", "/_sandbox/expire-tokens", body).status == .badRequest)
    }
}

/// Revoking, as FACTS.md has it: "Smokeball removes subscriptions when the refresh token expires
/// or access is revoked".
@Suite struct RevokeTests {
    typealias F = SandboxFixture

    @Test func aRevokedGrantRefusesRefreshAndCallsAndItsSubscriptionsAreGoneAtOnce() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, refresh) = fixture.connect()
        try ExpireTokensTests.subscribe(fixture, access)
        let server = F.json(fixture.token([("grant_type", "client_credentials")]))["access_token"] as? String ?? ""
        let onBehalf = "/\(fixture.accountID.uuidString.lowercased())/firm"
        #expect(fixture.api("GET", onBehalf, token: server).status == .ok)

        let revoked = fixture.admin(
            "POST", "/_sandbox/revoke",
            ["account_id": fixture.accountID.uuidString.lowercased(), "client_id": F.clientID])
        #expect(revoked.status == .ok)
        #expect(F.json(revoked)["revoked"] as? Int == 2)
        #expect(F.json(revoked)["subscriptions_removed"] as? Int == 1)
        #expect(try ExpireTokensTests.subscriptions(fixture) == 0)
        #expect(fixture.api("GET", "/firm", token: access).status == .unauthorized)
        let refused = fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)])
        #expect(F.json(refused)["error"] as? String == "invalid_grant")
        // Server-to-server calls lose the account too: it no longer grants the partner access.
        #expect(fixture.api("GET", onBehalf, token: server).status == .forbidden)
    }
}
