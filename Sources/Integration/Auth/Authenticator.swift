import Basics
import Cryptography
import FastCGI
import Foundation

/// Verifies the caller's `Authorization: Bearer <JWT>` (HS256, as CaseHug's auth issues them)
/// and yields the user id from `sub`. Which firm the user belongs to is looked up in the database
/// (see `Tenancy`), never taken from the token. The token must be meant for this service: its
/// `aud` (a string or an array) contains `audience`, and when `issuer` is set, `iss` equals it, so
/// a token the same auth server signed for another audience is not accepted here.
public struct Authenticator: Sendable {
    let secret: [UInt8]
    let audience: String
    let issuer: String?
    let leeway: Int64
    let clock: @Sendable () -> Int64
    let verified = VerifiedTokens()

    public init(
        secret: [UInt8], audience: String = "authenticated", issuer: String? = nil, leeway: Int64 = 30,
        clock: @escaping @Sendable () -> Int64 = { Int64(time(nil)) }
    ) {
        self.secret = secret
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.clock = clock
    }

    /// The route processes' authenticator: secret, audience and issuer from the environment.
    public init(configuration: Configuration) {
        self.init(secret: configuration.jwtSecret, audience: configuration.jwtAudience, issuer: configuration.jwtIssuer)
    }

    /// The cookie a plain browser link carries the same JWT in (the connect route accepts it, so
    /// that an `<a href>` works where no script can set a header).
    public static let sessionCookie = "casehug_session"

    /// The caller's user id from `Authorization: Bearer`, or, when `acceptingSessionCookie` and
    /// there is no Authorization header, from the `casehug_session` cookie.
    public func userID(for request: Request, acceptingSessionCookie: Bool = false) throws(HTTPError) -> UUID {
        if acceptingSessionCookie, request.header("authorization") == nil,
            let cookie = request.cookie(Self.sessionCookie)
        {
            return try userID(forToken: Substring(cookie))
        }
        guard let header = request.header("authorization") else {
            throw Self.unauthorized("missing_token", "Authorization: Bearer token required")
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw Self.unauthorized("missing_token", "Authorization: Bearer token required")
        }
        return try userID(forToken: parts[1])
    }

    func userID(forToken raw: Substring) throws(HTTPError) -> UUID {
        let text = String(raw.trimmingSpaces)
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
        guard claims.audience.contains(audience) else {
            throw Self.unauthorized("invalid_token", "The token is not valid", detail: "jwt_wrong_audience")
        }
        if let issuer, claims.raw["iss"] != issuer {
            throw Self.unauthorized("invalid_token", "The token is not valid", detail: "jwt_wrong_issuer")
        }
        guard let id = UUID(uuidString: claims.subject) else {
            throw Self.unauthorized("invalid_token", "The token is not valid", detail: "sub is not a uuid")
        }
        verified.remember(text, userID: id, claims: claims, now: now)
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
/// checked get in; their time window is re-checked on every use. Entries are keyed by the token's
/// SHA-256 (32 bytes, whatever the token's size: a header may carry up to 16 KiB), and the cache
/// is bounded: when full, expired entries go first, then the least recently used half, so a
/// burst of new tokens never flushes every active user's entry at once.
final class VerifiedTokens: @unchecked Sendable {
    struct Entry {
        let userID: UUID
        let expiresAt: Int64
        let notBefore: Int64?
        var lastUsed: UInt64
    }

    static let capacity = 4096
    private let lock = NSLock()
    private var entries: [[UInt8]: Entry] = [:]
    /// A logical clock for recency: bumped on every hit and insert.
    private var tick: UInt64 = 0

    static func key(_ token: String) -> [UInt8] { SHA256.hash(Array(token.utf8)) }

    func userID(for token: String, now: Int64, leeway: Int64) -> UUID? {
        let key = Self.key(token)
        lock.lock()
        defer { lock.unlock() }
        guard var entry = entries[key] else { return nil }
        let notYet = entry.notBefore.map { now + leeway < $0 } ?? false
        guard now - leeway <= entry.expiresAt, !notYet else {
            // Expired: verify again so the caller gets the precise error.
            entries[key] = nil
            return nil
        }
        tick += 1
        entry.lastUsed = tick
        entries[key] = entry
        return entry.userID
    }

    func remember(_ token: String, userID: UUID, claims: JWT.Claims, now: Int64 = Int64(time(nil))) {
        let key = Self.key(token)
        lock.lock()
        defer { lock.unlock() }
        if entries[key] == nil && entries.count >= Self.capacity { evict(now: now) }
        tick += 1
        entries[key] = Entry(
            userID: userID, expiresAt: claims.expiresAt, notBefore: claims.notBefore, lastUsed: tick)
    }

    /// Drops expired entries; if that frees less than a quarter of the cache, also the least
    /// recently used entries down to half of it. O(n log n), once per `capacity / 2` inserts.
    private func evict(now: Int64) {
        entries = entries.filter { $0.value.expiresAt >= now }
        guard entries.count > Self.capacity * 3 / 4 else { return }
        let keep = entries.sorted { $0.value.lastUsed > $1.value.lastUsed }.prefix(Self.capacity / 2)
        entries = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return entries.count
    }

    /// The keys' sizes, for tests: every entry is keyed by a 32-byte digest.
    var keySizes: Set<Int> {
        lock.lock()
        defer { lock.unlock() }
        return Set(entries.keys.map(\.count))
    }

    func contains(_ token: String) -> Bool {
        let key = Self.key(token)
        lock.lock()
        defer { lock.unlock() }
        return entries[key] != nil
    }
}
