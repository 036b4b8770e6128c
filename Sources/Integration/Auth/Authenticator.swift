import Cryptography
import FastCGI
import Foundation

/// Verifies the caller's `Authorization: Bearer <JWT>` (HS256, as CaseHug's auth issues them)
/// and yields the user id from `sub`. Which firm the user belongs to is looked up in the database
/// (see `Tenancy`), never taken from the token.
public struct Authenticator: Sendable {
    let secret: [UInt8]
    let leeway: Int64
    let clock: @Sendable () -> Int64

    public init(secret: [UInt8], leeway: Int64 = 30, clock: @escaping @Sendable () -> Int64 = { Int64(time(nil)) }) {
        self.secret = secret
        self.leeway = leeway
        self.clock = clock
    }

    public func userID(for request: Request) throws(HTTPError) -> UUID {
        guard let header = request.header("authorization") else {
            throw Self.unauthorized("missing_token", "Authorization: Bearer token required")
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw Self.unauthorized("missing_token", "Authorization: Bearer token required")
        }
        let claims: JWT.Claims
        do {
            claims = try JWT.verifyHS256(
                String(parts[1]).trimmingCharacters(in: .whitespaces), secret: secret, now: clock(), leeway: leeway)
        } catch {
            switch error {
            case .expired: throw Self.unauthorized("token_expired", "The token has expired", detail: error.description)
            default: throw Self.unauthorized("invalid_token", "The token is not valid", detail: error.description)
            }
        }
        guard let id = UUID(uuidString: claims.subject) else {
            throw Self.unauthorized("invalid_token", "The token is not valid", detail: "sub is not a uuid")
        }
        return id
    }

    static func unauthorized(_ code: String, _ message: String, detail: String? = nil) -> HTTPError {
        HTTPError(
            .unauthorized, code: code, message,
            headers: [("WWW-Authenticate", "Bearer error=\"invalid_token\"")], logDetail: detail)
    }
}
