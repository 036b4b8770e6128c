import Foundation
import Testing

@testable import Cryptography

@Suite struct JWTTests {
    static let secret = Array("test-secret-please-change".utf8)
    static let now: Int64 = 1_700_000_000

    /// Builds a token from raw JSON so tests can produce headers `signHS256` never would.
    static func token(header: String, payload: String, secret: [UInt8] = JWTTests.secret) -> String {
        let input = Base64URL.encode(header.utf8) + "." + Base64URL.encode(payload.utf8)
        return input + "." + Base64URL.encode(HMACSHA256.authenticate(input.utf8, key: secret))
    }

    static let standardHeader = #"{"alg":"HS256","typ":"JWT"}"#

    static func verify(_ token: String) throws(JWT.JWTError) -> JWT.Claims {
        try JWT.verifyHS256(token, secret: secret, now: now)
    }

    @Test func signedTokenVerifies() throws {
        let token = JWT.signHS256(
            claims: ["sub": "user-1", "exp": Self.now + 600, "iat": Self.now, "role": "admin", "email": "a@b.example"],
            secret: Self.secret)
        let claims = try Self.verify(token)
        #expect(claims.subject == "user-1")
        #expect(claims.expiresAt == Self.now + 600)
        #expect(claims.issuedAt == Self.now)
        #expect(claims.notBefore == nil)
        #expect(claims.raw == ["sub": "user-1", "role": "admin", "email": "a@b.example"])
        #expect(token.split(separator: ".").first == "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
    }

    // Computed offline with Python's hmac/base64 over the jwt.io sample claims plus role and exp.
    static let knownToken =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        + "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwicm9sZSI6ImFkbWluIiwiaWF0IjoxNTE2MjM5MDIyLCJleHAiOjE1MTYyNDI2MjJ9."
        + "ollb8n6vEvlv-dChiR6gAS86UxUvFI6bGxNDs6ZjnMw"

    @Test func knownVectorVerifies() throws {
        let claims = try JWT.verifyHS256(
            Self.knownToken, secret: Array("your-256-bit-secret".utf8), now: 1_516_240_000)
        #expect(claims.subject == "1234567890")
        #expect(claims.expiresAt == 1_516_242_622)
        #expect(claims.issuedAt == 1_516_239_022)
        #expect(claims.raw["name"] == "John Doe")
        #expect(claims.raw["role"] == "admin")
    }

    @Test func jwtIOSampleChecksSignatureBeforeClaims() {
        // The canonical jwt.io sample has a valid signature but no exp.
        let sample =
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
            + "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        #expect(throws: JWT.JWTError.missingExpiry) {
            try JWT.verifyHS256(sample, secret: Array("your-256-bit-secret".utf8), now: 1_516_240_000)
        }
        #expect(throws: JWT.JWTError.badSignature) {
            try JWT.verifyHS256(sample, secret: Array("wrong".utf8), now: 1_516_240_000)
        }
    }

    static let validPayload = #"{"sub":"u","exp":1700000600}"#

    @Test(arguments: [
        #"{"alg":"none","typ":"JWT"}"#, #"{"alg":"HS512","typ":"JWT"}"#, #"{"alg":"RS256","typ":"JWT"}"#,
        #"{"alg":"hs256"}"#, #"{"typ":"JWT"}"#, #"{"alg":256}"#, #"{"alg":"HS256","crit":["exp"]}"#,
    ])
    func unsupportedHeadersAreRejected(header: String) {
        let token = Self.token(header: header, payload: Self.validPayload)
        #expect(throws: JWT.JWTError.unsupportedAlgorithm) { try Self.verify(token) }
    }

    @Test func algNoneWithEmptySignatureIsRejected() {
        let token =
            Base64URL.encode(#"{"alg":"none","typ":"JWT"}"#.utf8) + "."
            + Base64URL.encode(
                Self.validPayload.utf8) + "."
        #expect(throws: JWT.JWTError.unsupportedAlgorithm) { try Self.verify(token) }
    }

    @Test(arguments: [#"{"alg":"HS256"}"#, #"{"alg":"HS256","typ":"jwt"}"#, #"{"alg":"HS256","typ":"JWT"}"#])
    func acceptedHeaders(header: String) throws {
        #expect(try Self.verify(Self.token(header: header, payload: Self.validPayload)).subject == "u")
    }

    @Test(arguments: [#"{"alg":"HS256","typ":"JWS"}"#, #"{"alg":"HS256","typ":1}"#])
    func wrongTypIsMalformed(header: String) {
        #expect(throws: JWT.JWTError.malformed) {
            try Self.verify(Self.token(header: header, payload: Self.validPayload))
        }
    }

    @Test func signatureFromAnotherSecretIsRejected() {
        let token = Self.token(header: Self.standardHeader, payload: Self.validPayload, secret: Array("other".utf8))
        #expect(throws: JWT.JWTError.badSignature) { try Self.verify(token) }
    }

    @Test func payloadModifiedAfterSigningIsRejected() {
        let token = Self.token(header: Self.standardHeader, payload: Self.validPayload)
        let parts = token.split(separator: ".").map(String.init)
        let forged = parts[0] + "." + Base64URL.encode(#"{"sub":"admin","exp":1700000600}"#.utf8) + "." + parts[2]
        #expect(throws: JWT.JWTError.badSignature) { try Self.verify(forged) }
    }

    @Test func truncatedSignatureIsRejected() {
        let token = Self.token(header: Self.standardHeader, payload: Self.validPayload)
        #expect(throws: JWT.JWTError.badSignature) { try Self.verify(String(token.dropLast(3))) }
    }

    @Test func expiryAndLeeway() throws {
        let expired = Self.token(header: Self.standardHeader, payload: #"{"sub":"u","exp":1699999969}"#)
        #expect(throws: JWT.JWTError.expired) { try Self.verify(expired) }  // 31 s past exp
        let withinLeeway = Self.token(header: Self.standardHeader, payload: #"{"sub":"u","exp":1699999970}"#)
        #expect(try Self.verify(withinLeeway).expiresAt == 1_699_999_970)  // 30 s past exp
        #expect(throws: JWT.JWTError.expired) {
            try JWT.verifyHS256(withinLeeway, secret: Self.secret, now: Self.now, leeway: 0)
        }
    }

    @Test func notBefore() throws {
        let future = Self.token(header: Self.standardHeader, payload: #"{"sub":"u","exp":1700000600,"nbf":1700000031}"#)
        #expect(throws: JWT.JWTError.notYetValid) { try Self.verify(future) }
        let nearlyValid = Self.token(
            header: Self.standardHeader, payload: #"{"sub":"u","exp":1700000600,"nbf":1700000030}"#)
        #expect(try Self.verify(nearlyValid).notBefore == 1_700_000_030)
    }

    @Test(arguments: [#"{"exp":1700000600}"#, #"{"sub":"","exp":1700000600}"#, #"{"sub":5,"exp":1700000600}"#])
    func missingSubject(payload: String) {
        #expect(throws: JWT.JWTError.missingSubject) {
            try Self.verify(Self.token(header: Self.standardHeader, payload: payload))
        }
    }

    @Test(arguments: [#"{"sub":"u"}"#, #"{"sub":"u","exp":"1700000600"}"#, #"{"sub":"u","exp":true}"#])
    func missingExpiry(payload: String) {
        #expect(throws: JWT.JWTError.missingExpiry) {
            try Self.verify(Self.token(header: Self.standardHeader, payload: payload))
        }
    }

    @Test func fractionalAndHugeNumericDates() throws {
        let fractional = Self.token(header: Self.standardHeader, payload: #"{"sub":"u","exp":1700000600.9}"#)
        #expect(try Self.verify(fractional).expiresAt == 1_700_000_600)
        let huge = Self.token(header: Self.standardHeader, payload: #"{"sub":"u","exp":1e30}"#)
        #expect(throws: JWT.JWTError.malformed) { try Self.verify(huge) }
        let badNbf = Self.token(header: Self.standardHeader, payload: #"{"sub":"u","exp":1700000600,"nbf":"x"}"#)
        #expect(throws: JWT.JWTError.malformed) { try Self.verify(badNbf) }
    }

    @Test func structurallyMalformedTokens() {
        let valid = Self.token(header: Self.standardHeader, payload: Self.validPayload)
        let parts = valid.split(separator: ".").map(String.init)
        let cases = [
            parts[0] + "." + parts[1],  // two segments
            valid + "." + parts[2],  // four segments
            parts[0] + "." + parts[1] + "." + parts[2] + "=",  // padding
            parts[0] + "." + parts[1] + "." + "ab+/",  // standard alphabet
            parts[0] + "!." + parts[1] + "." + parts[2],  // invalid character
            "",
            "..",
        ]
        for token in cases {
            #expect(throws: JWT.JWTError.malformed, "\(token)") { try Self.verify(token) }
        }
    }

    @Test(arguments: ["not json", "[1,2]", #""HS256""#, ""])
    func nonJSONObjectHeaderIsMalformed(header: String) {
        #expect(throws: JWT.JWTError.malformed) {
            try Self.verify(Self.token(header: header, payload: Self.validPayload))
        }
    }

    @Test func nonJSONPayloadIsMalformedAfterSignatureCheck() {
        #expect(throws: JWT.JWTError.malformed) {
            try Self.verify(Self.token(header: Self.standardHeader, payload: "not json"))
        }
        #expect(throws: JWT.JWTError.badSignature) {
            try Self.verify(Self.token(header: Self.standardHeader, payload: "not json", secret: [1]))
        }
    }

    @Test func errorDescriptionsAreShortCodes() {
        #expect(JWT.JWTError.badSignature.description == "jwt_bad_signature")
        #expect(JWT.JWTError.malformed.description == "jwt_malformed")
    }
}
