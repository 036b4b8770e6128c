import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL

/// Loopback-only controls for tests and demos: register partners, create firm accounts with
/// sign-in users, revoke a firm's grant, read the request log, reset. JSON in, JSON out.
///
///     POST /_sandbox/clients    {client_id, client_secret, api_key, redirect_uris[], rate_per_second?, burst?,
///                                access_ttl_seconds?, refresh_ttl_seconds?, write_delay_ms?, retry_after_header?}
///     POST /_sandbox/accounts   {id?, name, region?, state?, users: [{email, password, first_name?, last_name?}]}
///     POST /_sandbox/revoke     {account_id, client_id?}
///     POST /_sandbox/expire-tokens {kind: access|refresh, account_id?, client_id?}
///     GET  /_sandbox/requests?client_id=..&after_id=..&path=..&grant_type=..
///     POST /_sandbox/faults     {path_prefix, status?, share?, latency_ms?, drop_connection?, client_id?}
///     DELETE /_sandbox/faults
///     GET  /_sandbox/counters?client_id=..&path=..
///     POST /_sandbox/reset
/// Admin endpoints a resource adds under `/_sandbox/`; nil for paths it does not own.
protocol SandboxAdminExtension {
    func handle(_ request: Request) throws -> Response?
}

struct SandboxAdmin {
    let database: Database
    let now: Date

    func handle(_ request: Request) throws -> Response {
        // An empty or missing REMOTE_ADDR says nothing about the caller: refused like any other.
        guard ["127.0.0.1", "::1"].contains(request.remoteAddress) else {
            throw SandboxFailure.problem(.forbidden, "Forbidden", "Admin endpoints answer loopback callers only")
        }
        switch (request.method, request.path) {
        case ("POST", "/_sandbox/clients"): return try registerClient(try body(request))
        case ("POST", "/_sandbox/accounts"): return try createAccount(try body(request))
        case ("POST", "/_sandbox/revoke"): return try revoke(try body(request))
        case ("POST", "/_sandbox/expire-tokens"): return try expireTokens(try body(request))
        case ("GET", "/_sandbox/requests"): return try requests(request)
        case ("POST", "/_sandbox/reset"): return try reset()
        case ("POST", "/_sandbox/faults"): return try addFault(try body(request))
        case ("DELETE", "/_sandbox/faults"): return try clearFaults()
        case ("GET", "/_sandbox/counters"): return try counters(request)
        default:
            // Resource-specific controls (seeding, acting as a firm user, webhook knobs).
            let extensions: [any SandboxAdminExtension] = [
                ContactsAdmin(database: database, now: now), MattersAdmin(database: database, now: now),
                WebhooksAdmin(database: database, now: now),
            ]
            for admin in extensions {
                if let response = try admin.handle(request) { return response }
            }
            throw SandboxFailure.problem(.notFound, "Not Found", "No such admin endpoint")
        }
    }

    func body(_ request: Request) throws -> [String: Any] {
        do {
            return try request.jsonObject()
        } catch {
            throw SandboxFailure.problem(.badRequest, "Bad Request", error.message)
        }
    }

    static func string(_ body: [String: Any], _ key: String) throws -> String {
        guard let value = body[key] as? String, !value.isEmpty else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "\(key) must be a non-empty string")
        }
        return value
    }

    /// A JSON number in `range`, for settings stored as double precision. The range keeps what
    /// is derived from them (a Retry-After in whole seconds) within Int.
    static func number(_ body: [String: Any], _ key: String, default value: Double, range: ClosedRange<Double>) throws
        -> Double
    {
        guard let raw = body[key] else { return value }
        guard let number = raw as? NSNumber, JSONBoolean.value(raw) == nil, range.contains(number.doubleValue) else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request", "\(key) must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number.doubleValue
    }

    /// A whole JSON number in `range`. JSON numbers arrive as doubles and Int(Double) traps
    /// outside Int's range, so the conversion is the exact one, checked before use.
    static func integer(_ body: [String: Any], _ key: String, default value: Int, range: ClosedRange<Int>) throws
        -> Int
    {
        guard let raw = body[key] else { return value }
        guard let number = raw as? NSNumber, JSONBoolean.value(raw) == nil,
            let whole = Int(exactly: number.doubleValue), range.contains(whole)
        else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request",
                "\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return whole
    }

    /// The firm user an admin call acts as (events' `userId`): `user_id` when given (a user of
    /// the account, else 400), otherwise the account's first user by email (none: no userId).
    static func firmUser(_ connection: Connection, _ accountID: UUID, _ body: [String: Any]) throws -> UUID? {
        guard let raw = body["user_id"] else {
            return try connection.execute(
                "SELECT id FROM sb_users WHERE account_id = $1 ORDER BY email LIMIT 1", [accountID]
            ).first?.uuid("id")
        }
        guard let text = raw as? String, let id = UUID(uuidString: text),
            try connection.execute("SELECT 1 FROM sb_users WHERE id = $1 AND account_id = $2", [id, accountID])
                .rowCount == 1
        else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "user_id must name a user of the account")
        }
        return id
    }

    /// The columns these land in are `integer`.
    static let positiveInt32 = 1...Int(Int32.max)

    func registerClient(_ body: [String: Any]) throws -> Response {
        let clientID = try Self.string(body, "client_id")
        let secret = try Self.string(body, "client_secret")
        let apiKey = try Self.string(body, "api_key")
        guard let uris = body["redirect_uris"] as? [String], !uris.isEmpty, uris.allSatisfy({ !$0.isEmpty }) else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request", "redirect_uris must be a non-empty array of strings")
        }
        let rate = try Self.number(body, "rate_per_second", default: 5, range: 0.001...1_000_000)
        let burst = try Self.number(body, "burst", default: 5, range: 1...1_000_000)
        let accessTTL = try Self.integer(body, "access_ttl_seconds", default: 3600, range: Self.positiveInt32)
        let refreshTTL = try Self.integer(body, "refresh_ttl_seconds", default: 2_592_000, range: Self.positiveInt32)
        // Zero is allowed here: writes readable at once.
        let writeDelay = try Self.integer(body, "write_delay_ms", default: 0, range: 0...Int(Int32.max))
        // Smokeball's 429s carry no Retry-After; a partner may ask for one to test a client's use of it.
        let retryAfterHeader: Bool
        switch body["retry_after_header"] {
        case nil: retryAfterHeader = false
        case let raw?:
            guard let flag = JSONBoolean.value(raw) else {
                throw SandboxFailure.problem(.badRequest, "Bad Request", "retry_after_header must be true or false")
            }
            retryAfterHeader = flag
        }
        try database.transaction { connection in
            try connection.execute(
                """
                INSERT INTO sb_clients (client_id, secret_sha256, api_key_sha256, redirect_uris, rate_per_second, burst,
                                        access_ttl_seconds, refresh_ttl_seconds, write_delay_ms, retry_after_header)
                VALUES ($1, $2, $3, ARRAY(SELECT json_array_elements_text($4::json)), $5, $6, $7, $8, $9, $10)
                ON CONFLICT (client_id) DO UPDATE SET secret_sha256 = EXCLUDED.secret_sha256,
                    api_key_sha256 = EXCLUDED.api_key_sha256, redirect_uris = EXCLUDED.redirect_uris,
                    rate_per_second = EXCLUDED.rate_per_second, burst = EXCLUDED.burst,
                    access_ttl_seconds = EXCLUDED.access_ttl_seconds, refresh_ttl_seconds = EXCLUDED.refresh_ttl_seconds,
                    write_delay_ms = EXCLUDED.write_delay_ms, retry_after_header = EXCLUDED.retry_after_header
                """,
                [
                    clientID, Secrets.digest(secret), Secrets.digest(apiKey),
                    SQLValue.json(String(decoding: try JSONWriter.encode(uris), as: UTF8.self)), rate, burst, accessTTL,
                    refreshTTL, writeDelay, retryAfterHeader,
                ])
            // A changed rate starts from a full bucket.
            try connection.execute("DELETE FROM sb_rate_buckets WHERE client_id = $1", [clientID])
        }
        return Response.json(["client_id": clientID], status: .created)
    }

    /// An account's state when none is given: one its region's seeded catalogue covers.
    static let defaultStates = ["US": "IL", "AU": "NSW", "UK": "ENG"]

    func createAccount(_ body: [String: Any]) throws -> Response {
        let name = try Self.string(body, "name")
        let region = (body["region"] as? String) ?? "US"
        guard ["US", "AU", "UK"].contains(region) else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "region must be US, AU or UK")
        }
        // Where the firm is (`GET /firm`'s `streetAddress.state`), which picks its matter types.
        let state = (body["state"] as? String) ?? Self.defaultStates[region] ?? "IL"
        guard (2...3).contains(state.count), state.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "state must be 2 or 3 capital letters")
        }
        var accountID = UUID()
        if let given = body["id"] {
            guard let text = given as? String, let parsed = UUID(uuidString: text) else {
                throw SandboxFailure.problem(.badRequest, "Bad Request", "id must be a uuid")
            }
            accountID = parsed
        }
        let users = (body["users"] as? [[String: Any]]) ?? []
        let created = try database.transaction { connection -> [[String: Any]] in
            // Idempotent, so `scripts/run` can create its demo account on every start.
            try connection.execute(
                """
                INSERT INTO sb_accounts (id, name, region, state) VALUES ($1, $2, $3, $4)
                ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, region = EXCLUDED.region, state = EXCLUDED.state
                """, [accountID, name, region, state])
            return try users.map { user in
                let email = try Self.string(user, "email").lowercased()
                let password = try Self.string(user, "password")
                let salt = SecureRandom.bytes(16)
                let userID = try connection.execute(
                    """
                    INSERT INTO sb_users (id, account_id, email, first_name, last_name, password_salt, password_digest)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    ON CONFLICT (email) DO UPDATE SET account_id = EXCLUDED.account_id,
                        first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
                        password_salt = EXCLUDED.password_salt, password_digest = EXCLUDED.password_digest
                    RETURNING id
                    """,
                    [
                        UUID(), accountID, email, (user["first_name"] as? String) ?? "Demo",
                        (user["last_name"] as? String) ?? "User", salt, Secrets.passwordDigest(password, salt: salt),
                    ]
                ).single().uuid("id")
                return ["id": userID.uuidString.lowercased(), "email": email]
            }
        }
        return Response.json(["id": accountID.uuidString.lowercased(), "users": created], status: .created)
    }

    /// A firm revoking the integration's access: every token of the account (for one client or
    /// all) stops working at once, and, as Smokeball does, the partner's webhook subscriptions in
    /// the account go with the grant (here at once, not at the dispatcher's next pass).
    func revoke(_ body: [String: Any]) throws -> Response {
        guard let text = body["account_id"] as? String, let accountID = UUID(uuidString: text) else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "account_id must be a uuid")
        }
        let clientID = try Self.optionalString(body, "client_id")
        let (revoked, removed) = try database.transaction { connection in
            let revoked = try connection.execute(
                """
                UPDATE sb_tokens SET revoked_at = $3
                WHERE account_id = $1 AND ($2::text IS NULL OR client_id = $2) AND revoked_at IS NULL
                """, [accountID, clientID, now]
            ).affectedRows
            return (revoked, try Webhooks.purgeLapsed(connection, now: now, account: accountID, client: clientID))
        }
        return Response.json(["revoked": revoked, "subscriptions_removed": removed])
    }

    /// Makes live tokens expire now (the sandbox's clock), so a test can have Smokeball refuse
    /// a token the integration still believes valid (its `exp` claim says otherwise), or a
    /// refresh token lapse (`invalid_grant`). A lapsed refresh grant takes the partner's webhook
    /// subscriptions in the account with it, as a revoke does (FACTS.md: Smokeball removes them
    /// when the refresh token expires). `account_id` picks a firm's tokens, `client_id` a
    /// partner's (its client-credentials tokens too); at least one of them.
    func expireTokens(_ body: [String: Any]) throws -> Response {
        guard let kind = body["kind"] as? String, ["access", "refresh"].contains(kind) else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "kind must be access or refresh")
        }
        var accountID: UUID?
        if let raw = body["account_id"] {
            guard let text = raw as? String, let parsed = UUID(uuidString: text) else {
                throw SandboxFailure.problem(.badRequest, "Bad Request", "account_id must be a uuid")
            }
            accountID = parsed
        }
        let clientID = try Self.optionalString(body, "client_id")
        guard accountID != nil || clientID != nil else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "give account_id, client_id or both")
        }
        let (expired, removed) = try database.transaction { connection in
            let expired = try connection.execute(
                """
                UPDATE sb_tokens SET expires_at = $4
                WHERE kind = $1 AND ($2::uuid IS NULL OR account_id = $2) AND ($3::text IS NULL OR client_id = $3)
                AND revoked_at IS NULL AND expires_at > $4
                """, [kind, accountID, clientID, now]
            ).affectedRows
            guard kind == "refresh" else { return (expired, 0) }
            return (expired, try Webhooks.purgeLapsed(connection, now: now, account: accountID, client: clientID))
        }
        return Response.json(["expired": expired, "subscriptions_removed": removed])
    }

    /// An optional non-empty string field (absent or null: nil).
    static func optionalString(_ body: [String: Any], _ key: String) throws -> String? {
        guard let raw = body[key], !(raw is NSNull) else { return nil }
        guard let text = raw as? String, !text.isEmpty else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "\(key) must be a non-empty string")
        }
        return text
    }

    /// The request log, oldest first: `client_id`, `path` (exact) and `grant_type` filter it;
    /// token-endpoint calls carry their `grant_type`, API calls null.
    func requests(_ request: Request) throws -> Response {
        let after = Int64(request.queryValue("after_id") ?? "0") ?? 0
        let rows = try database.withConnection { connection in
            try connection.execute(
                """
                SELECT id, client_id, method, path, request_id, status, grant_type, at FROM sb_requests
                WHERE id > $1 AND ($2::text IS NULL OR client_id = $2) AND ($3::text IS NULL OR path = $3)
                AND ($4::text IS NULL OR grant_type = $4) ORDER BY id LIMIT 10000
                """,
                [
                    after, request.queryValue("client_id"), request.queryValue("path"),
                    request.queryValue("grant_type"),
                ]
            ).rows
        }
        let items: [[String: Any]] = try rows.map { row in
            [
                "id": try row.int("id"), "client_id": (try row.optionalString("client_id")) ?? NSNull(),
                "method": try row.string("method"), "path": try row.string("path"),
                "request_id": (try row.optionalString("request_id")) ?? NSNull(), "status": try row.int("status"),
                "grant_type": (try row.optionalString("grant_type")) ?? NSNull(),
                "at": Timestamp.iso8601(try row.date("at")),
            ]
        }
        return Response.json(["requests": items])
    }

    func addFault(_ body: [String: Any]) throws -> Response {
        let prefix = try Self.string(body, "path_prefix")
        guard prefix.hasPrefix("/") else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "path_prefix must start with /")
        }
        var status: Int?
        if let raw = body["status"] {
            guard let number = raw as? Int, [429, 500, 502, 503, 504].contains(number) else {
                throw SandboxFailure.problem(.badRequest, "Bad Request", "status must be 429, 500, 502, 503 or 504")
            }
            status = number
        }
        let share = try Self.number(body, "share", default: 1, range: 0...1)
        let latency = try Self.integer(body, "latency_ms", default: 0, range: 0...60_000)
        let drop = (body["drop_connection"] as? Bool) ?? false
        guard status != nil || latency > 0 || drop else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "give a status, latency_ms or drop_connection")
        }
        let id = try database.withConnection {
            try $0.execute(
                """
                INSERT INTO sb_faults (client_id, path_prefix, status, share, latency_ms, drop_connection)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
                """, [body["client_id"] as? String, prefix, status, share, latency, drop]
            ).single().int("id")
        }
        return Response.json(["id": id], status: .created)
    }

    func clearFaults() throws -> Response {
        try database.withConnection { try $0.executeScript("DELETE FROM sb_faults") }
        return Response(status: .noContent)
    }

    /// Requests per status, per method and path, and (token endpoint) per grant type and per
    /// grant type and status, for "exactly one create" and "exactly one refresh" assertions.
    func counters(_ request: Request) throws -> Response {
        let rows = try database.withConnection {
            try $0.execute(
                """
                SELECT method, path, status, grant_type, count(*)::bigint AS n FROM sb_requests
                WHERE ($1::text IS NULL OR client_id = $1) AND ($2::text IS NULL OR path = $2)
                GROUP BY method, path, status, grant_type ORDER BY method, path, status, grant_type
                """, [request.queryValue("client_id"), request.queryValue("path")]
            ).rows
        }
        var byStatus: [String: Int64] = [:]
        var byPath: [String: Int64] = [:]
        var byGrant: [String: Int64] = [:]
        var byGrantStatus: [String: Int64] = [:]
        for row in rows {
            let count = try row.int("n")
            let status = String(try row.int("status"))
            byStatus[status, default: 0] += count
            byPath[try row.string("method") + " " + (try row.string("path")), default: 0] += count
            if let grant = try row.optionalString("grant_type") {
                byGrant[grant, default: 0] += count
                byGrantStatus[grant + " " + status, default: 0] += count
            }
        }
        return Response.json([
            "by_status": byStatus, "by_path": byPath, "by_grant_type": byGrant, "by_grant_type_status": byGrantStatus,
            "total": byStatus.values.reduce(0, +),
        ])
    }

    func reset() throws -> Response {
        try database.withConnection { connection in
            try connection.executeScript(
                """
                TRUNCATE sb_requests, sb_rate_buckets, sb_tokens, sb_auth_codes, sb_users, sb_accounts, sb_clients,
                    sb_faults CASCADE
                """)
        }
        return Response(status: .noContent)
    }
}
