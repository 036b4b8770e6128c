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

    static func token(_ claims: [String: Any], secret: [UInt8] = secret) -> String {
        JWT.signHS256(claims: claims, secret: secret)
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
