import Basics
import FastCGI
import Foundation
import PostgreSQL

/// Webhook subscriptions of the calling partner in the caller's account:
///
///     GET    /webhooks/types                                                   → 200 StringCollection
///     GET    /webhooks?Offset=&Limit=                                          → 200 WebhookSubscriptionPagedCollection
///     POST   /webhooks       {name, eventTypes[], eventNotificationUrl, key}   → 200 WebhookSubscription
///     GET    /webhooks/{id}                                                    → 200 WebhookSubscription
///     PUT    /webhooks/{id}  {name?, eventTypes?, eventNotificationUrl?, key?} → 200 WebhookSubscription
///     DELETE /webhooks/{id}                                                    → 200
///     POST   /webhooks/{id}/notify                                             → 200 (a `noop` event to it)
///
/// Subscriptions belong to (account, client): another account's are not found, another
/// partner's in the same account are forbidden. The `key` signs deliveries and is never
/// returned. Subscriptions whose grant lapsed (refresh token revoked or expired) are removed,
/// as Smokeball does; `WebhookDispatcher` delivers the events.
struct Webhooks: APIResource {
    let database: Database
    let now: Date

    /// What `GET /webhooks/types` answers and subscriptions may name. The spec has no enum:
    /// FACTS.md's list plus the task, staff and deletion events Smokeball documents beside them.
    static let eventTypes = [
        "matter.created", "matter.updated", "matter.closed", "matter.deleted",
        "contact.created", "contact.updated", "contact.deleted",
        "files.updated", "memo.created", "memo.updated",
        "task.created", "task.updated", "task.deleted",
        "staff.created", "staff.updated",
        "invoice.finalized", "invoice.updated",
        "error",
    ]

    func handle(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response? {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.first == "webhooks" else { return nil }
        switch (request.method, parts.count) {
        case ("GET", 2) where parts[1] == "types":
            return types(request, path: path)
        case (_, 2) where parts[1] == "types":
            throw Self.methodNotAllowed(request)
        case ("GET", 1):
            return try list(request, path: path, caller: caller)
        case ("POST", 1):
            return try create(request, caller: caller)
        case (_, 1):
            throw Self.methodNotAllowed(request)
        case ("GET", 2), ("PUT", 2), ("DELETE", 2):
            return try one(request, id: parts[1], caller: caller)
        case (_, 2):
            throw Self.methodNotAllowed(request)
        case ("POST", 3) where parts[2] == "notify":
            return try notify(id: parts[1], caller: caller)
        default:
            return nil
        }
    }

    static func methodNotAllowed(_ request: Request) -> SandboxFailure {
        .problem(.methodNotAllowed, "Method Not Allowed", "\(request.method) is not supported here")
    }

    static func origin(_ request: Request) -> String { request.sandboxOrigin }

    // MARK: Reads

    func types(_ request: Request, path: String) -> Response {
        Response.json(["href": Self.origin(request) + path, "value": Self.eventTypes])
    }

    static let columns = """
        id, account_id, name, to_jsonb(event_types) AS event_types, url, created_at, updated_at
        """

    func list(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response {
        let page = try Paging(request)
        let (size, rows) = try database.transaction { connection in
            try Self.purgeLapsed(connection, now: now, account: caller.accountID, client: caller.clientID)
            let size = try connection.execute(
                "SELECT count(*) AS size FROM sb_webhook_subscriptions WHERE account_id = $1 AND client_id = $2",
                [caller.accountID, caller.clientID]
            ).single().int("size")
            let rows = try connection.execute(
                """
                SELECT \(Self.columns) FROM sb_webhook_subscriptions WHERE account_id = $1 AND client_id = $2
                ORDER BY created_at, id OFFSET $3 LIMIT $4
                """, [caller.accountID, caller.clientID, page.offset, page.limit]
            ).rows
            return (size, rows)
        }
        let base = page.base(request, path: path)
        let items = try rows.map { try Self.subscription($0, origin: base.origin) }
        return Response.json(page.envelope(items: items, size: Int(size), base: base))
    }

    /// A subscription as the spec's `WebhookSubscription` (no key).
    static func subscription(_ row: Row, origin: String) throws -> [String: Any] {
        let id = try row.uuid("id").uuidString.lowercased()
        let updated = try row.date("updated_at")
        return [
            "id": id, "href": origin + "/webhooks/" + id,
            "accountId": try row.uuid("account_id").uuidString.lowercased(),
            "name": (try row.optionalString("name")) ?? NSNull(),
            "eventTypes": (try row.json("event_types") as? [String]) ?? [],
            "eventNotificationUrl": try row.string("url"),
            "createdDateUtc": Timestamp.iso8601(try row.date("created_at")),
            "updatedDateUtc": Timestamp.iso8601(updated), "lastUpdated": DotNetTicks.from(updated),
        ]
    }

    // MARK: Writes

    /// The validated fields of a POST or PUT body; nil where a PUT leaves the value as it is.
    struct Fields {
        var name: String??
        var eventTypes: [String]?
        var url: String?
        /// `.some(nil)`: remove the key (PUT with `""`).
        var key: String??
    }

    static func fields(_ body: [String: Any], creating: Bool) throws -> Fields {
        func bad(_ detail: String) -> SandboxFailure { .problem(.badRequest, "Bad Request", detail) }
        func given(_ name: String) -> Any? {
            guard let value = body[name], !(value is NSNull) else { return nil }
            return value
        }
        var fields = Fields()
        if let raw = given("name") {
            guard let name = raw as? String, name.count <= 1000 else {
                throw bad("name must be a string of at most 1000 characters")
            }
            fields.name = .some(name.isEmpty ? nil : name)
        } else if creating {
            fields.name = .some(nil)
        }
        if let raw = given("eventTypes") {
            guard let types = raw as? [String], !types.isEmpty else {
                throw bad("eventTypes must be a non-empty array of event type names")
            }
            var unique: [String] = []
            for type in types.map({ $0.lowercased() }) where !unique.contains(type) {
                guard eventTypes.contains(type) else {
                    throw bad("Unknown event type '\(type)'; GET /webhooks/types lists the valid ones")
                }
                unique.append(type)
            }
            fields.eventTypes = unique
        } else if creating {
            throw bad("eventTypes is required")
        }
        if let raw = given("eventNotificationUrl") {
            guard let url = raw as? String, isNotificationURL(url) else {
                throw bad("eventNotificationUrl must be an absolute http or https URL")
            }
            fields.url = url
        } else if creating {
            throw bad("eventNotificationUrl is required")
        }
        if let raw = given("key") {
            guard let key = raw as? String, key.utf8.count <= 1000 else {
                throw bad("key must be a string of at most 1000 bytes")
            }
            fields.key = .some(key.isEmpty ? nil : key)
        } else if creating {
            fields.key = .some(nil)
        }
        return fields
    }

    static func isNotificationURL(_ text: String) -> Bool {
        guard text.utf8.count <= 2048, !text.contains(where: { $0.isWhitespace || $0.isNewline }),
            let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
            text.lowercased().hasPrefix(scheme + "://")
        else { return false }
        return true
    }

    static func jsonArray(_ values: [String]) throws -> SQLValue {
        .json(String(decoding: try JSONWriter.encode(values), as: UTF8.self))
    }

    /// WebhookSubscriptionDto, the body of POST and PUT.
    static let dto = BodyShape.properties(
        ["key", "name", "eventNotificationUrl"], ["eventTypes": .list(.string)])

    func create(_ request: Request, caller: APIServer.Caller) throws -> Response {
        let fields = try Self.fields(
            try BodyShape.check(try request.sandboxJSON(), "WebhookSubscriptionDto", Self.dto), creating: true)
        let row = try database.transaction { connection in
            try Self.purgeLapsed(connection, now: now, account: caller.accountID, client: caller.clientID)
            return try connection.execute(
                """
                INSERT INTO sb_webhook_subscriptions (id, account_id, client_id, name, event_types, url, key, created_at, updated_at)
                VALUES ($1, $2, $3, $4, ARRAY(SELECT jsonb_array_elements_text($5::jsonb)), $6, $7, $8, $8)
                RETURNING \(Self.columns)
                """,
                [
                    UUID(), caller.accountID, caller.clientID, fields.name ?? nil,
                    try Self.jsonArray(fields.eventTypes ?? []), fields.url ?? "", fields.key ?? nil, now,
                ]
            ).single()
        }
        return Response.json(try Self.subscription(row, origin: Self.origin(request)))
    }

    /// GET, PUT or DELETE of one subscription of the caller's.
    func one(_ request: Request, id text: String, caller: APIServer.Caller) throws -> Response {
        guard let id = UUID(uuidString: text) else {
            throw SandboxFailure.problem(.notFound, "Not Found", "No such webhook subscription")
        }
        let fields =
            request.method == "PUT"
            ? try Self.fields(
                try BodyShape.check(try request.sandboxJSON(), "WebhookSubscriptionDto", Self.dto), creating: false)
            : nil
        let row = try database.transaction { connection -> Row? in
            try Self.purgeLapsed(connection, now: now, account: caller.accountID, client: caller.clientID)
            try requireOwn(connection, id: id, caller: caller)
            switch request.method {
            case "DELETE":
                try connection.execute("DELETE FROM sb_webhook_subscriptions WHERE id = $1", [id])
                return nil
            case "PUT":
                let fields = fields ?? Fields()
                return try connection.execute(
                    """
                    UPDATE sb_webhook_subscriptions SET
                        name = CASE WHEN $2::boolean THEN $3::text ELSE name END,
                        event_types = CASE WHEN $4::jsonb IS NULL THEN event_types
                            ELSE ARRAY(SELECT jsonb_array_elements_text($4::jsonb)) END,
                        url = coalesce($5::text, url),
                        key = CASE WHEN $6::boolean THEN $7::text ELSE key END,
                        updated_at = $8
                    WHERE id = $1 RETURNING \(Self.columns)
                    """,
                    [
                        id, fields.name != nil, fields.name ?? nil,
                        try fields.eventTypes.map(Self.jsonArray) ?? SQLValue.null, fields.url, fields.key != nil,
                        fields.key ?? nil, now,
                    ]
                ).single()
            default:
                return try connection.execute(
                    "SELECT \(Self.columns) FROM sb_webhook_subscriptions WHERE id = $1", [id]
                ).single()
            }
        }
        guard let row else { return Response(status: .ok) }
        return Response.json(try Self.subscription(row, origin: Self.origin(request)))
    }

    /// Another account's subscription does not exist for the caller; another partner's in the
    /// same account is forbidden (the spec's 403 on PUT).
    func requireOwn(_ connection: Connection, id: UUID, caller: APIServer.Caller) throws {
        let owner = try connection.execute(
            "SELECT client_id FROM sb_webhook_subscriptions WHERE id = $1 AND account_id = $2 FOR UPDATE",
            [id, caller.accountID]
        ).first
        guard let owner else { throw SandboxFailure.problem(.notFound, "Not Found", "No such webhook subscription") }
        guard try owner.string("client_id") == caller.clientID else {
            throw SandboxFailure.problem(
                .forbidden, "Forbidden", "The webhook subscription is not associated with this client")
        }
    }

    /// `POST /webhooks/{id}/notify`: a `noop` event delivered to this subscription only.
    func notify(id text: String, caller: APIServer.Caller) throws -> Response {
        guard let id = UUID(uuidString: text) else {
            throw SandboxFailure.problem(.notFound, "Not Found", "No such webhook subscription")
        }
        try database.transaction { connection in
            try Self.purgeLapsed(connection, now: now, account: caller.accountID, client: caller.clientID)
            try requireOwn(connection, id: id, caller: caller)
            let event = try connection.execute(
                """
                INSERT INTO sb_events (account_id, type, source, request_id, client_id, user_id, payload)
                VALUES ($1, 'noop', 'API', $2, $3, $4, '{}'::jsonb) RETURNING id
                """, [caller.accountID, caller.requestID, caller.clientID, caller.userID]
            ).single().int("id")
            // Fanned out here, to this subscription only.
            try connection.execute("INSERT INTO sb_webhook_fanout (event_id) VALUES ($1)", [event])
            try connection.execute(
                """
                INSERT INTO sb_webhook_deliveries
                    (event_id, subscription_id, account_id, client_id, event_type, url, request_id, next_attempt_at)
                SELECT $1, s.id, s.account_id, s.client_id, 'noop', s.url, coalesce($3, gen_random_uuid()::text), $4
                FROM sb_webhook_subscriptions s WHERE s.id = $2
                """, [event, id, caller.requestID.flatMap { $0.isEmpty ? nil : $0 }, now])
        }
        return Response(status: .ok)
    }

    // MARK: Lapsed grants

    /// Removes subscriptions whose partner lost the account's grant: no refresh token of the
    /// (account, client) is live at `now`, or one died (revoked or expired) after the
    /// subscription was made at a moment when no other was live — a reconnection afterwards does
    /// not bring them back. Returns how many were removed.
    @discardableResult
    static func purgeLapsed(_ connection: Connection, now: Date, account: UUID? = nil, client: String? = nil) throws
        -> Int
    {
        let died = "least(coalesce(t.revoked_at, 'infinity'::timestamptz), t.expires_at)"
        return try connection.execute(
            """
            DELETE FROM sb_webhook_subscriptions s
            WHERE ($2::uuid IS NULL OR s.account_id = $2) AND ($3::text IS NULL OR s.client_id = $3)
            AND (
                NOT EXISTS (
                    SELECT 1 FROM sb_tokens t
                    WHERE t.kind = 'refresh' AND t.client_id = s.client_id AND t.account_id = s.account_id
                    AND t.revoked_at IS NULL AND t.expires_at > $1)
                OR EXISTS (
                    SELECT 1 FROM sb_tokens t JOIN sb_clients c ON c.client_id = t.client_id
                    WHERE t.kind = 'refresh' AND t.client_id = s.client_id AND t.account_id = s.account_id
                    AND \(died) > s.created_at AND \(died) <= $1
                    AND NOT EXISTS (
                        SELECT 1 FROM sb_tokens u
                        WHERE u.kind = 'refresh' AND u.client_id = s.client_id AND u.account_id = s.account_id
                        AND u.expires_at - make_interval(secs => c.refresh_ttl_seconds) <= \(died)
                        AND least(coalesce(u.revoked_at, 'infinity'::timestamptz), u.expires_at) > \(died)))
            )
            """, [now, account, client]
        ).affectedRows
    }
}
