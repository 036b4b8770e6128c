import Basics
import FastCGI
import Foundation
import HTTPClient
import PostgreSQL

/// Webhook controls for tests and demos (loopback only, behind `SandboxAdmin`):
///
///     POST /_sandbox/webhooks/knobs       {client_id, duplicate?: bool, shuffle?: bool, shuffle_seed?: int}
///                                         → the client's knobs (a seeded shuffle replays its order)
///     GET  /_sandbox/webhooks/knobs?client_id=..
///     GET  /_sandbox/webhooks/deliveries?client_id=..   every delivery (status, attempts, url, event type)
///     POST /_sandbox/webhooks/deliver                   one dispatcher pass, now → what it did
///
/// Knobs not given keep their value (false at first).
struct WebhooksAdmin: SandboxAdminExtension {
    let database: Database
    let now: Date

    func handle(_ request: Request) throws -> Response? {
        switch (request.method, request.path) {
        case ("POST", "/_sandbox/webhooks/knobs"): return try setKnobs(request)
        case ("GET", "/_sandbox/webhooks/knobs"): return try knobs(request)
        case ("GET", "/_sandbox/webhooks/deliveries"): return try deliveries(request)
        case ("POST", "/_sandbox/webhooks/deliver"): return try deliver()
        default: return nil
        }
    }

    func setKnobs(_ request: Request) throws -> Response {
        let body: [String: Any]
        body = try SandboxAdmin(database: database, now: now).body(request)
        let clientID = try SandboxAdmin.string(body, "client_id")
        func flag(_ name: String) throws -> Bool? {
            guard let raw = body[name], !(raw is NSNull) else { return nil }
            guard let flag = JSONBoolean.value(raw) else {
                throw SandboxFailure.problem(.badRequest, "Bad Request", "\(name) must be true or false")
            }
            return flag
        }
        let duplicate = try flag("duplicate")
        let shuffle = try flag("shuffle")
        // Up to 2^53 - 1: JSON numbers arrive as doubles.
        let seed: Int64? =
            body["shuffle_seed"] == nil || body["shuffle_seed"] is NSNull
            ? nil : Int64(try SandboxAdmin.integer(body, "shuffle_seed", default: 0, range: 0...9_007_199_254_740_991))
        let row = try database.withConnection { connection in
            guard
                try connection.execute("SELECT 1 FROM sb_clients WHERE client_id = $1", [clientID]).rowCount == 1
            else { throw SandboxFailure.problem(.notFound, "Not Found", "No such client") }
            return try connection.execute(
                """
                INSERT INTO sb_webhook_knobs (client_id, duplicate, shuffle, shuffle_seed)
                VALUES ($1, coalesce($2, false), coalesce($3, false), $4)
                ON CONFLICT (client_id) DO UPDATE SET duplicate = coalesce($2, sb_webhook_knobs.duplicate),
                    shuffle = coalesce($3, sb_webhook_knobs.shuffle),
                    shuffle_seed = coalesce($4, sb_webhook_knobs.shuffle_seed), updated_at = clock_timestamp()
                RETURNING client_id, duplicate, shuffle, shuffle_seed
                """, [clientID, duplicate, shuffle, seed]
            ).single()
        }
        return Response.json(try Self.knobs(row))
    }

    static func knobs(_ row: Row) throws -> [String: Any] {
        [
            "client_id": try row.string("client_id"), "duplicate": try row.bool("duplicate"),
            "shuffle": try row.bool("shuffle"), "shuffle_seed": try row.optionalInt("shuffle_seed") ?? NSNull(),
        ]
    }

    func knobs(_ request: Request) throws -> Response {
        guard let clientID = request.queryValue("client_id"), !clientID.isEmpty else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "client_id is required")
        }
        let row = try database.withConnection {
            try $0.execute(
                "SELECT client_id, duplicate, shuffle, shuffle_seed FROM sb_webhook_knobs WHERE client_id = $1",
                [clientID]
            ).first
        }
        guard let row else {
            return Response.json([
                "client_id": clientID, "duplicate": false, "shuffle": false, "shuffle_seed": NSNull(),
            ])
        }
        return Response.json(try Self.knobs(row))
    }

    func deliveries(_ request: Request) throws -> Response {
        let rows = try database.withConnection {
            try $0.execute(
                """
                SELECT d.id, d.event_id, d.event_type, d.subscription_id, d.account_id, d.client_id, d.url, d.request_id,
                       d.status, d.attempts, d.last_status, d.last_error, d.next_attempt_at, d.delivered_at,
                       (SELECT count(*) FROM sb_webhook_attempts a WHERE a.delivery_id = d.id) AS sends
                FROM sb_webhook_deliveries d
                WHERE $1::text IS NULL OR d.client_id = $1 ORDER BY d.id LIMIT 10000
                """, [request.queryValue("client_id").flatMap { $0.isEmpty ? nil : $0 }]
            ).rows
        }
        let items: [[String: Any]] = try rows.map { row in
            [
                "id": try row.int("id"), "event_id": try row.int("event_id"),
                "event_type": try row.string("event_type"),
                "subscription_id": (try row.optionalUUID("subscription_id")?.uuidString.lowercased()) ?? NSNull(),
                "account_id": try row.uuid("account_id").uuidString.lowercased(),
                "client_id": try row.string("client_id"), "url": try row.string("url"),
                "request_id": try row.string("request_id"), "status": try row.string("status"),
                "attempts": try row.int("attempts"), "sends": try row.int("sends"),
                "last_status": (try row.optionalInt("last_status")) ?? NSNull(),
                "last_error": (try row.optionalString("last_error")) ?? NSNull(),
                "next_attempt_at": Timestamp.iso8601(try row.date("next_attempt_at")),
                "delivered_at": (try row.optionalDate("delivered_at").map { Timestamp.iso8601($0) }) ?? NSNull(),
            ]
        }
        return Response.json(["deliveries": items])
    }

    /// One dispatcher pass at the sandbox's clock, so tests and demos need no `deliver` process.
    func deliver() throws -> Response {
        let client: HTTPClient
        do {
            client = try HTTPClient()
        } catch {
            throw SandboxFailure.problem(.internalServerError, "Internal Server Error", error.description)
        }
        let counts = try WebhookDispatcher.deliverPending(database: database, now: now, client: client)
        return Response.json(counts.json)
    }
}
