import Cryptography
import FastCGI
import Foundation
import PostgreSQL

/// The API: every request needs the partner's `x-api-key` and a valid Bearer token, is counted
/// against the partner's token bucket, is echoed its `RequestId`, and lands in the request log.
struct APIServer {
    let database: Database
    let now: Date

    /// Who is calling: the partner (client) and the firm account the token acts for.
    struct Caller {
        let clientID: String
        let accountID: UUID
        let region: String
        /// The request's `RequestId`, carried by the events it causes.
        let requestID: String?
        let writeDelayMilliseconds: Int
        /// The firm user acting: the one who signed in for the token, or (client credentials)
        /// the `UserId` header when it names a user of the account. Events carry it as `userId`.
        var userID: UUID? = nil
    }

    func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        let requestID = request.header("requestid")
        var clientID: String?
        let response: Response
        do {
            let client = try apiClient(request)
            clientID = client.id
            switch try Faults(database: database).apply(path: request.path, clientID: client.id) {
            case .proceed: break
            case .fail(let failure): throw failure
            case .dropConnection:
                // Logged first (status 0) so tests can count what was cut off.
                try? record(request, clientID: client.id, requestID: requestID, status: 0)
                Faults.dropConnection()
            }
            try takeToken(client)
            var path = Substring(request.path)
            let caller = try authorize(request, client: client, path: &path)
            // Updates that have become due are applied before the request sees the account.
            try PendingUpdate.settle(database, account: caller.accountID, now: now)
            response = try route(request, path: String(path), caller: caller)
        } catch let failure as SandboxFailure {
            response = failure.response(requestID: requestID)
        }
        try? record(request, clientID: clientID, requestID: requestID, status: response.status.code)
        var echoed = response
        if let requestID, !requestID.isEmpty, echoed.header("RequestId") == nil {
            echoed.headers.append(("RequestId", requestID))
        }
        return echoed
    }

    // MARK: Gate

    struct APIClient {
        let id: String
        let rate: Double
        let burst: Double
        let writeDelayMilliseconds: Int
        /// The `retry_after_header` knob: 429s carry `Retry-After` (Smokeball's do not).
        let retryAfterHeader: Bool
    }

    func apiClient(_ request: Request) throws -> APIClient {
        guard let key = request.header("x-api-key"), !key.isEmpty else {
            throw SandboxFailure.problem(.forbidden, "Forbidden", "x-api-key header is required")
        }
        let row = try database.withConnection {
            try $0.execute(
                """
                SELECT client_id, rate_per_second, burst, write_delay_ms, retry_after_header FROM sb_clients
                WHERE api_key_sha256 = $1
                """,
                [Secrets.digest(key)]
            ).first
        }
        guard let row else { throw SandboxFailure.problem(.forbidden, "Forbidden", "The API key is not valid") }
        return APIClient(
            id: try row.string("client_id"), rate: try row.double("rate_per_second"), burst: try row.double("burst"),
            writeDelayMilliseconds: Int(try row.int("write_delay_ms")),
            retryAfterHeader: try row.bool("retry_after_header"))
    }

    /// One token from the partner's bucket, shared by every sandbox process through one row.
    /// Refused: Smokeball's gateway 429 (see `SandboxFailure.tooManyRequests`).
    /// The row lock serialises concurrent requests, so at most burst + rate × T requests are
    /// admitted in any T seconds.
    func takeToken(_ client: APIClient) throws {
        let refill =
            "least($3::float8, b.tokens + greatest(0, extract(epoch FROM clock_timestamp() - b.updated_at)) * $2::float8)"
        let admitted = try database.withConnection { connection in
            try connection.execute(
                """
                INSERT INTO sb_rate_buckets AS b (client_id, tokens, updated_at)
                VALUES ($1, $3::float8 - 1, clock_timestamp())
                ON CONFLICT (client_id) DO UPDATE SET tokens = \(refill) - 1, updated_at = clock_timestamp()
                WHERE \(refill) >= 1
                RETURNING tokens
                """, [client.id, client.rate, client.burst]
            ).rowCount == 1
        }
        guard !admitted else { return }
        guard client.retryAfterHeader else { throw SandboxFailure.tooManyRequests(retryAfterSeconds: nil) }
        let available = try database.withConnection { connection in
            try connection.execute(
                "SELECT \(refill) AS available FROM sb_rate_buckets b WHERE b.client_id = $1",
                [client.id, client.rate, client.burst]
            ).first?.double("available")
        }
        let wait = max(1, Int(((1 - (available ?? 0)) / client.rate).rounded(.up)))
        throw SandboxFailure.tooManyRequests(retryAfterSeconds: wait)
    }

    /// The Bearer token's account. A client-credentials token has none and must name the
    /// account as the first path segment (`/{accountId}/matters`), which is then stripped.
    func authorize(_ request: Request, client: APIClient, path: inout Substring) throws -> Caller {
        let challenge = [("WWW-Authenticate", "Bearer")]
        guard let header = request.header("authorization"), header.count > 7,
            header.prefix(7).lowercased() == "bearer "
        else {
            throw SandboxFailure.problem(
                .unauthorized, "Unauthorized", "A Bearer token is required", headers: challenge)
        }
        let token = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        let row = try database.withConnection {
            try $0.execute(
                """
                SELECT t.client_id, t.account_id, t.user_id FROM sb_tokens t
                WHERE t.token_sha256 = $1 AND t.kind = 'access' AND t.revoked_at IS NULL AND t.expires_at > $2
                """, [Secrets.digest(token), now]
            ).first
        }
        guard let row else {
            throw SandboxFailure.problem(
                .unauthorized, "Unauthorized", "The access token is invalid or has expired", headers: challenge)
        }
        guard try row.string("client_id") == client.id else {
            throw SandboxFailure.problem(.forbidden, "Forbidden", "The token was issued to another client")
        }
        var accountID = try row.optionalUUID("account_id")
        var userID = try row.optionalUUID("user_id")
        if accountID == nil {
            // Client credentials: /{accountId}/... and the account must have granted this client access.
            let segments = path.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: true)
            guard let first = segments.first, let named = UUID(uuidString: String(first)) else {
                throw SandboxFailure.problem(
                    .notFound, "Not Found", "Client-credentials calls name the account: /{accountId}/...")
            }
            let granted = try database.withConnection {
                try $0.execute(
                    """
                    SELECT 1 FROM sb_tokens WHERE kind = 'refresh' AND client_id = $1 AND account_id = $2
                    AND revoked_at IS NULL AND expires_at > $3 LIMIT 1
                    """, [client.id, named, now]
                ).rowCount == 1
            }
            guard granted else {
                throw SandboxFailure.problem(.forbidden, "Forbidden", "The account has not granted this client access")
            }
            accountID = named
            path = segments.count > 1 ? "/" + segments[1] : "/"
            // On behalf of a firm user: only a user of that account counts.
            if let named = request.header("userid").flatMap(UUID.init(uuidString:)) {
                userID = try database.withConnection {
                    try $0.execute("SELECT id FROM sb_users WHERE id = $1 AND account_id = $2", [named, accountID])
                        .first?.uuid("id")
                }
            }
        }
        guard let accountID else { throw SandboxFailure.problem(.forbidden, "Forbidden", "No account") }
        let region = try database.withConnection {
            try $0.execute("SELECT region FROM sb_accounts WHERE id = $1", [accountID]).first?.string("region")
        }
        guard let region else { throw SandboxFailure.problem(.forbidden, "Forbidden", "The account no longer exists") }
        return Caller(
            clientID: client.id, accountID: accountID, region: region, requestID: request.header("requestid"),
            writeDelayMilliseconds: client.writeDelayMilliseconds, userID: userID)
    }

    func record(_ request: Request, clientID: String?, requestID: String?, status: Int) throws {
        try RequestLog.record(database, request, clientID: clientID, requestID: requestID, status: status)
    }

    // MARK: Resources

    func route(_ request: Request, path: String, caller: Caller) throws -> Response {
        switch (request.method, path) {
        case ("GET", "/mattertypes"):
            return try MatterTypes(database: database).list(request, caller: caller, path: path)
        case (_, "/mattertypes"):
            throw SandboxFailure.problem(
                .methodNotAllowed, "Method Not Allowed", "\(request.method) is not supported here")
        default:
            let resources: [any APIResource] = [
                // Documents first: it owns /matters/{id}/documents and /memos below Matters' paths.
                FirmAndStaff(database: database, now: now), Documents(database: database, now: now),
                Contacts(database: database, now: now), Matters(database: database, now: now),
                Webhooks(database: database, now: now),
            ]
            for resource in resources {
                if let response = try resource.handle(request, path: path, caller: caller) { return response }
            }
            throw SandboxFailure.problem(.notFound, "Not Found", "No such resource")
        }
    }
}
