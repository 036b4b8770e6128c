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
    let verified = VerifiedTokens()

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
        // Trimmed by hand: Foundation's trimmingCharacters round-trips through NSString.
        var token = parts[1]
        while let last = token.last, last == " " || last == "\t" { token.removeLast() }
        while let first = token.first, first == " " || first == "\t" { token.removeFirst() }
        let text = String(token)
        let now = clock()
        if let userID = verified.userID(for: text, now: now, leeway: leeway) { return userID }
        let claims: JWT.Claims
        do {
            claims = try JWT.verifyHS256(text, secret: secret, now: now, leeway: leeway)
        } catch {
            switch error {
            case .expired: throw Self.unauthorized("token_expired", "The token has expired", detail: error.description)
            default: throw Self.unauthorized("invalid_token", "The token is not valid", detail: error.description)
            }
        }
        guard let id = UUID(uuidString: claims.subject) else {
            throw Self.unauthorized("invalid_token", "The token is not valid", detail: "sub is not a uuid")
        }
        verified.remember(text, userID: id, claims: claims)
        return id
    }

    static func unauthorized(_ code: String, _ message: String, detail: String? = nil) -> HTTPError {
        HTTPError(
            .unauthorized, code: code, message,
            headers: [("WWW-Authenticate", "Bearer error=\"invalid_token\"")], logDetail: detail)
    }
}

/// Tokens this process has already verified, so a user's next requests skip the HMAC and JSON
/// work (a CaseHug session reuses one token until it expires). Only tokens whose signature was
/// checked get in; their time window is re-checked on every use, and the cache is bounded.
final class VerifiedTokens: @unchecked Sendable {
    struct Entry {
        let userID: UUID
        let expiresAt: Int64
        let notBefore: Int64?
    }

    static let capacity = 4096
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]

    func userID(for token: String, now: Int64, leeway: Int64) -> UUID? {
        lock.lock()
        defer { lock.unlock() }
        guard let entry = entries[token] else { return nil }
        let notYet = entry.notBefore.map { now + leeway < $0 } ?? false
        guard now - leeway <= entry.expiresAt, !notYet else {
            // Expired: verify again so the caller gets the precise error.
            entries[token] = nil
            return nil
        }
        return entry.userID
    }

    func remember(_ token: String, userID: UUID, claims: JWT.Claims) {
        lock.lock()
        defer { lock.unlock() }
        if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
        entries[token] = Entry(userID: userID, expiresAt: claims.expiresAt, notBefore: claims.notBefore)
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return entries.count
    }
}
