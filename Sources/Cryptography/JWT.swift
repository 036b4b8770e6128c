import Basics
import Foundation

/// Minimal HS256 JSON Web Token support (RFC 7519 / RFC 7515 compact serialization).
public enum JWT {
    /// Claims of a verified token. Only produced after the signature has been checked.
    public struct Claims: Sendable, Equatable {
        public let subject: String
        public let expiresAt: Int64
        public let notBefore: Int64?
        public let issuedAt: Int64?
        /// Every string-valued top-level claim (e.g. `sub`, `role`, `email`, `iss`, string `aud`).
        public let raw: [String: String]
        /// `aud`, which RFC 7519 allows as one string or an array of strings; empty when absent.
        public let audience: [String]

        public init(
            subject: String, expiresAt: Int64, notBefore: Int64?, issuedAt: Int64?, raw: [String: String],
            audience: [String] = []
        ) {
            self.subject = subject
            self.expiresAt = expiresAt
            self.notBefore = notBefore
            self.issuedAt = issuedAt
            self.raw = raw
            self.audience = audience
        }
    }

    /// Verification failures. Descriptions are fixed codes so tokens never reach logs.
    public enum JWTError: Error, Sendable, Equatable, CustomStringConvertible {
        case malformed
        case unsupportedAlgorithm
        case badSignature
        case expired
        case notYetValid
        case missingSubject
        case missingExpiry

        public var description: String {
            switch self {
            case .malformed: "jwt_malformed"
            case .unsupportedAlgorithm: "jwt_unsupported_algorithm"
            case .badSignature: "jwt_bad_signature"
            case .expired: "jwt_expired"
            case .notYetValid: "jwt_not_yet_valid"
            case .missingSubject: "jwt_missing_subject"
            case .missingExpiry: "jwt_missing_expiry"
            }
        }
    }

    /// Verifies an HS256 token and returns its claims. `now` and the numeric dates are Unix seconds;
    /// `leeway` absorbs clock skew between the issuer and this host.
    public static func verifyHS256(
        _ token: String, secret: [UInt8], now: Int64, leeway: Int64 = 30
    ) throws(JWTError) -> Claims {
        let segments = token.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 3 else { throw .malformed }

        // The header decides the algorithm, so it is checked first; accepting anything but HS256
        // (notably "none" or an asymmetric alg) would open algorithm-confusion attacks.
        guard let headerBytes = Base64URL.decode(segments[0]), let header = jsonObject(headerBytes) else {
            throw .malformed
        }
        guard let alg = header["alg"] as? String, alg == "HS256" else { throw .unsupportedAlgorithm }
        // RFC 7515 §4.1.11: unknown critical extensions must be rejected, and we support none.
        guard header["crit"] == nil else { throw .unsupportedAlgorithm }
        if let typ = header["typ"] {
            guard let typ = typ as? String, typ.lowercased() == "jwt" else { throw .malformed }
        }

        // Authenticate before trusting any claim.
        guard let signature = Base64URL.decode(segments[2]), let payloadBytes = Base64URL.decode(segments[1]) else {
            throw .malformed
        }
        let signingInput = Array(token.utf8.prefix(segments[0].utf8.count + 1 + segments[1].utf8.count))
        let expected = HMACSHA256.authenticate(signingInput, key: secret)
        guard ConstantTime.equals(signature, expected) else { throw .badSignature }

        guard let payload = jsonObject(payloadBytes) else { throw .malformed }
        guard case .value(let expiresAt) = try numericDate(payload["exp"]) else { throw .missingExpiry }
        let notBefore = try optionalNumericDate(payload["nbf"])
        let issuedAt = try optionalNumericDate(payload["iat"])
        guard let subject = payload["sub"] as? String, !subject.isEmpty else { throw .missingSubject }

        if now > saturatingAdd(expiresAt, leeway) { throw .expired }
        if let notBefore, saturatingAdd(now, leeway) < notBefore { throw .notYetValid }

        let audience: [String]
        switch payload["aud"] {
        case nil: audience = []
        case let single as String: audience = [single]
        case let many as [Any]:
            let strings = many.compactMap { $0 as? String }
            guard strings.count == many.count else { throw .malformed }
            audience = strings
        default: throw .malformed
        }

        var raw: [String: String] = [:]
        for (name, value) in payload {
            if let string = value as? String { raw[name] = string }
        }
        return Claims(
            subject: subject, expiresAt: expiresAt, notBefore: notBefore, issuedAt: issuedAt, raw: raw,
            audience: audience)
    }

    /// Mints an HS256 token (admin CLI demo tokens, tests). Keys are sorted so output is stable.
    /// `claims` must be a valid JSON object; anything else is a programming error.
    public static func signHS256(claims: [String: Any], secret: [UInt8]) -> String {
        precondition(JSONSerialization.isValidJSONObject(claims), "JWT claims must be JSON-serializable")
        guard let payload = try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]) else {
            preconditionFailure("JWT claims must be JSON-serializable")
        }
        let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let signingInput = header + "." + Base64URL.encode(payload)
        return signingInput + "." + Base64URL.encode(HMACSHA256.authenticate(Array(signingInput.utf8), key: secret))
    }

    private static func jsonObject(_ bytes: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
    }

    private enum NumericDate {
        case absent
        case notANumber
        case value(Int64)
    }

    /// Booleans count as not-a-number even though Foundation bridges them to NSNumber.
    /// Fractional seconds are truncated toward negative infinity; out-of-range values are malformed.
    private static func numericDate(_ value: Any?) throws(JWTError) -> NumericDate {
        guard let value else { return .absent }
        guard let number = value as? NSNumber, JSONBoolean.value(number) == nil else { return .notANumber }
        let double = number.doubleValue
        guard double.isFinite else { throw .malformed }
        // Integers above 2^53 are not exact as Double; prefer the integer value when it agrees.
        let integer = number.int64Value
        if Double(integer) == double.rounded(.down) { return .value(integer) }
        guard let truncated = Int64(exactly: double.rounded(.down)) else { throw .malformed }
        return .value(truncated)
    }

    /// Optional numeric claims (`nbf`, `iat`) must be numbers when present.
    private static func optionalNumericDate(_ value: Any?) throws(JWTError) -> Int64? {
        switch try numericDate(value) {
        case .absent: nil
        case .notANumber: throw .malformed
        case .value(let seconds): seconds
        }
    }

    private static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        guard overflow else { return sum }
        return b > 0 ? .max : .min
    }
}
