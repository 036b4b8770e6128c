import Cryptography
import FastCGI
import Foundation
import Testing

@testable import Integration

/// Bearer-token checks without sockets or a database, including the per-process cache of
/// tokens already verified.
@Suite struct AuthenticatorTests {
    /// A clock the test moves by hand.
    final class ManualClock: @unchecked Sendable {
        private let lock = NSLock()
        private var seconds: Int64
        init(_ seconds: Int64) { self.seconds = seconds }
        var now: Int64 {
            lock.lock()
            defer { lock.unlock() }
            return seconds
        }
        func advance(by delta: Int64) {
            lock.lock()
            seconds += delta
            lock.unlock()
        }
    }

    static let secret = Array(TestEnvironment.jwtSecret.utf8)
    static let start: Int64 = 1_900_000_000

    /// A signed token; `aud` is "authenticated" (as Supabase issues them) unless the claims say
    /// otherwise or `audience` is nil.
    static func token(_ claims: [String: Any], secret: [UInt8] = secret, audience: String? = "authenticated")
        -> String
    {
        var claims = claims
        if let audience, claims["aud"] == nil { claims["aud"] = audience }
        return JWT.signHS256(claims: claims, secret: secret)
    }

    static func detail(_ authenticator: Authenticator, _ request: Request) -> String? {
        do {
            _ = try authenticator.userID(for: request)
            return nil
        } catch {
            return error.logDetail
        }
    }

    static func request(bearer token: String) -> Request {
        Request(method: "GET", path: "/", headers: ["authorization": "Bearer " + token], body: [], requestID: "t")
    }

    static func errorCode(_ authenticator: Authenticator, _ request: Request) -> String? {
        do {
            _ = try authenticator.userID(for: request)
            return nil
        } catch {
            #expect(error.status == .unauthorized)
            return error.code
        }
    }

    @Test func aValidTokenYieldsItsSubjectAndIsRememberedUntilItExpires() throws {
        let clock = ManualClock(Self.start)
        let authenticator = Authenticator(secret: Self.secret, leeway: 30, clock: { clock.now })
        let user = UUID()
        let token = Self.token(["sub": user.uuidString, "exp": Self.start + 60])
        #expect(try authenticator.userID(for: Self.request(bearer: token)) == user)
        #expect(authenticator.verified.count == 1)
        #expect(try authenticator.userID(for: Self.request(bearer: token)) == user)
        #expect(authenticator.verified.count == 1)

        // Past exp + leeway the cached entry no longer answers: the full check runs and refuses.
        clock.advance(by: 60 + 31)
        #expect(Self.errorCode(authenticator, Self.request(bearer: token)) == "token_expired")
        #expect(authenticator.verified.count == 0)
    }

    @Test func rejectedTokensAreNeverRemembered() {
        let authenticator = Authenticator(secret: Self.secret, clock: { Self.start })
        let user = UUID().uuidString
        let forged = Self.token(
            ["sub": user, "exp": Self.start + 60], secret: Array("another-secret-of-32-bytes-or-more!!".utf8))
        let noExpiry = Self.token(["sub": user])
        let notAUUID = Self.token(["sub": "admin", "exp": Self.start + 60])
        for token in [forged, noExpiry, notAUUID, "not.a.jwt"] {
            #expect(Self.errorCode(authenticator, Self.request(bearer: token)) == "invalid_token")
        }
        #expect(authenticator.verified.count == 0)
    }

    @Test func aTokenThatIsNotYetValidIsRefusedEvenAfterACachedUse() {
        let clock = ManualClock(Self.start)
        let authenticator = Authenticator(secret: Self.secret, leeway: 0, clock: { clock.now })
        let token = Self.token(["sub": UUID().uuidString, "exp": Self.start + 600, "nbf": Self.start + 100])
        #expect(Self.errorCode(authenticator, Self.request(bearer: token)) == "invalid_token")
        clock.advance(by: 100)
        #expect(Self.errorCode(authenticator, Self.request(bearer: token)) == nil)
    }

    @Test(arguments: ["Bearer", "Basic dXNlcjpwYXNz", "bearer", "Token abc"])
    func headersWithoutABearerTokenAreMissingTokens(header: String) {
        let authenticator = Authenticator(secret: Self.secret, clock: { Self.start })
        let request = Request(method: "GET", path: "/", headers: ["authorization": header], body: [], requestID: "t")
        #expect(Self.errorCode(authenticator, request) == "missing_token")
    }

    @Test func surroundingWhitespaceIsIgnored() throws {
        let authenticator = Authenticator(secret: Self.secret, clock: { Self.start })
        let user = UUID()
        let token = Self.token(["sub": user.uuidString, "exp": Self.start + 60])
        let request = Request(
            method: "GET", path: "/", headers: ["authorization": "Bearer  \t" + token + " \t"], body: [], requestID: "t"
        )
        #expect(try authenticator.userID(for: request) == user)
    }

    @Test func theAudienceMustBeThisService() throws {
        let authenticator = Authenticator(secret: Self.secret, clock: { Self.start })
        let user = UUID()
        let claims: [String: Any] = ["sub": user.uuidString, "exp": Self.start + 60]
        let wrong = Self.token(claims, audience: "another-service")
        let missing = Self.token(claims, audience: nil)
        let wrongList = Self.token(claims.merging(["aud": ["a", "b"]]) { $1 })
        let notStrings = Self.token(claims.merging(["aud": ["authenticated", 7]]) { $1 })
        for token in [wrong, missing, wrongList, notStrings] {
            #expect(Self.errorCode(authenticator, Self.request(bearer: token)) == "invalid_token")
        }
        #expect(Self.detail(authenticator, Self.request(bearer: wrong)) == "jwt_wrong_audience")
        #expect(Self.detail(authenticator, Self.request(bearer: missing)) == "jwt_wrong_audience")
        #expect(authenticator.verified.count == 0)
        let inList = Self.token(claims.merging(["aud": ["other", "authenticated"]]) { $1 })
        #expect(try authenticator.userID(for: Self.request(bearer: inList)) == user)
        let custom = Authenticator(secret: Self.secret, audience: "casehug", clock: { Self.start })
        #expect(try custom.userID(for: Self.request(bearer: Self.token(claims, audience: "casehug"))) == user)
        #expect(Self.errorCode(custom, Self.request(bearer: Self.token(claims))) == "invalid_token")
    }

    @Test func theIssuerIsCheckedOnlyWhenConfigured() throws {
        let user = UUID()
        let claims: [String: Any] = ["sub": user.uuidString, "exp": Self.start + 60]
        let issuer = "https://auth.casehug.test/auth/v1"
        let fromIssuer = Self.token(claims.merging(["iss": issuer]) { $1 })
        let fromElsewhere = Self.token(claims.merging(["iss": "https://evil.test/auth/v1"]) { $1 })
        let noIssuer = Self.token(claims)

        let strict = Authenticator(secret: Self.secret, issuer: issuer, clock: { Self.start })
        #expect(try strict.userID(for: Self.request(bearer: fromIssuer)) == user)
        for token in [fromElsewhere, noIssuer] {
            #expect(Self.errorCode(strict, Self.request(bearer: token)) == "invalid_token")
            #expect(Self.detail(strict, Self.request(bearer: token)) == "jwt_wrong_issuer")
        }

        let open = Authenticator(secret: Self.secret, clock: { Self.start })
        for token in [fromIssuer, fromElsewhere, noIssuer] {
            #expect(try open.userID(for: Self.request(bearer: token)) == user)
        }
    }

    @Test func audienceAndIssuerComeFromTheEnvironment() throws {
        let base = ["DATABASE_URL": "postgresql:///x", "CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret]
        let defaults = try Configuration.fromEnvironment(base)
        #expect(defaults.jwtAudience == "authenticated")
        #expect(defaults.jwtIssuer == nil)
        let set = try Configuration.fromEnvironment(
            base.merging(["CASEHUG_JWT_AUDIENCE": "casehug", "CASEHUG_JWT_ISSUER": "https://auth.test"]) { $1 })
        #expect(set.jwtAudience == "casehug")
        #expect(set.jwtIssuer == "https://auth.test")
        let authenticator = Authenticator(configuration: set)
        #expect(authenticator.audience == "casehug")
        #expect(authenticator.issuer == "https://auth.test")
    }

    @Test func theCacheIsKeyedByTheTokensDigest() throws {
        let authenticator = Authenticator(secret: Self.secret, clock: { Self.start })
        // A large token (a header may carry up to 16 KiB): its key is still 32 bytes.
        let token = Self.token([
            "sub": UUID().uuidString, "exp": Self.start + 60, "padding": String(repeating: "p", count: 12_000),
        ])
        _ = try authenticator.userID(for: Self.request(bearer: token))
        #expect(authenticator.verified.count == 1)
        #expect(authenticator.verified.keySizes == [SHA256.digestByteCount])
        #expect(authenticator.verified.contains(token))
    }

    @Test func aFullCacheEvictsOnlySomeEntriesAndKeepsTheRecentlyUsed() throws {
        let entries = VerifiedTokens()
        let claims = JWT.Claims(subject: "s", expiresAt: Self.start + 60, notBefore: nil, issuedAt: nil, raw: [:])
        for index in 0..<VerifiedTokens.capacity {
            entries.remember("token-\(index)", userID: UUID(), claims: claims, now: Self.start)
        }
        #expect(entries.count == VerifiedTokens.capacity)
        // token-0 is the oldest insert, but in use: it survives the eviction.
        #expect(entries.userID(for: "token-0", now: Self.start, leeway: 0) != nil)
        entries.remember("token-new", userID: UUID(), claims: claims, now: Self.start)
        #expect(entries.count > VerifiedTokens.capacity / 4)
        #expect(entries.count < VerifiedTokens.capacity)
        #expect(entries.contains("token-new"))
        #expect(entries.contains("token-0"))
        #expect(!entries.contains("token-1"))
        #expect(entries.contains("token-\(VerifiedTokens.capacity - 1)"))
    }

    @Test func expiredEntriesAreEvictedFirst() throws {
        let entries = VerifiedTokens()
        let expired = JWT.Claims(subject: "s", expiresAt: Self.start - 1, notBefore: nil, issuedAt: nil, raw: [:])
        let live = JWT.Claims(subject: "s", expiresAt: Self.start + 60, notBefore: nil, issuedAt: nil, raw: [:])
        for index in 0..<VerifiedTokens.capacity {
            entries.remember("token-\(index)", userID: UUID(), claims: index % 8 == 0 ? live : expired, now: Self.start)
        }
        entries.remember("token-new", userID: UUID(), claims: live, now: Self.start)
        // Only the expired ones went: every live entry is still there.
        #expect(entries.count == VerifiedTokens.capacity / 8 + 1)
        #expect(entries.contains("token-0"))
        #expect(entries.contains("token-8"))
        #expect(!entries.contains("token-1"))
    }

    @Test func theCacheStaysBounded() throws {
        let entries = VerifiedTokens()
        let claims = JWT.Claims(subject: "s", expiresAt: Self.start + 60, notBefore: nil, issuedAt: nil, raw: [:])
        for index in 0..<(VerifiedTokens.capacity + 10) {
            entries.remember("token-\(index)", userID: UUID(), claims: claims)
        }
        #expect(entries.count <= VerifiedTokens.capacity)
        #expect(entries.count > 0)
    }
}
