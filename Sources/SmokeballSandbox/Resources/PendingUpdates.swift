import FastCGI
import Foundation
import PostgreSQL

/// An accepted update of a matter or contact (PATCH, PUT or DELETE). Smokeball answers 202 and
/// applies it later, so with a partner's write delay it is checked at once (404 and 400 are
/// immediate answers), kept in `sb_pending_updates`, and applied — readable, with its event —
/// when due. Without a delay it is applied at once.
struct PendingUpdate {
    enum Resource: String {
        case matter, contact
    }

    let resource: Resource
    let id: UUID
    let method: String
    let body: [String: Any]

    init(resource: Resource, id: UUID, method: String, body: [String: Any]) {
        self.resource = resource
        self.id = id
        self.method = method
        self.body = body
    }

    /// A kept update, from its `sb_pending_updates` row.
    init(_ row: Row) throws {
        guard let resource = Resource(rawValue: try row.string("resource")),
            let body = try JSONSerialization.jsonObject(with: Data(try row.string("body").utf8)) as? [String: Any]
        else { throw DatabaseError(.typeMismatch, name: "resource") }
        self.init(resource: resource, id: try row.uuid("resource_id"), method: try row.string("method"), body: body)
    }

    /// Applies it as Smokeball's processor would, in `connection`, at `now`.
    func apply(_ connection: Connection, caller: APIServer.Caller, now: Date, database: Database) throws {
        switch (resource, method) {
        case (.matter, "DELETE"):
            // Smokeball keeps deleted matters, with status Deleted.
            try Matters(database: database, now: now).apply(
                ["status": .text("Deleted")], to: id, account: caller.accountID, region: caller.region,
                lockedContacts: false, caller: caller, connection: connection)
        case (.matter, _):
            try Matters(database: database, now: now).apply(
                try Matters.fields(body), to: id, account: caller.accountID, region: caller.region,
                lockedContacts: method == "PUT", caller: caller, connection: connection)
        case (.contact, "DELETE"):
            var changes = ContactDocument.Changes()
            changes.isDeleted = true
            _ = try ContactDocument.apply(
                changes, to: id, account: caller.accountID, region: caller.region, caller: caller, now: now,
                connection: connection)
        case (.contact, _):
            let outcome = try ContactDocument.apply(
                try ContactDocument.Changes(body), to: id, account: caller.accountID, region: caller.region,
                caller: caller, now: now, connection: connection)
            if case .failed(let reason) = outcome {
                try ContactDocument.recordError(
                    connection, account: caller.accountID, id: id, reason: reason, caller: caller)
            }
        }
    }

    /// The `error` event of an update that was accepted but could not be applied, in the shape
    /// the resource's other error events have.
    func recordFailure(_ connection: Connection, reason: String, caller: APIServer.Caller) throws {
        switch resource {
        case .matter:
            try Matters.recordFailure(
                connection, account: caller.accountID, id: id, reason: reason, caller: caller)
        case .contact:
            try ContactDocument.recordError(
                connection, account: caller.accountID, id: id, reason: reason, caller: caller)
        }
    }

    /// Applies it now, or (with a write delay) checks it against what is readable now and keeps
    /// it for later. The check runs the update inside a savepoint that is then rolled back.
    func accept(_ database: Database, caller: APIServer.Caller, now: Date) throws {
        try database.transaction { connection in
            guard caller.writeDelayMilliseconds > 0 else {
                try apply(connection, caller: caller, now: now, database: database)
                return
            }
            try connection.execute("SAVEPOINT dry_run")
            try apply(connection, caller: caller, now: now, database: database)
            try connection.execute("ROLLBACK TO SAVEPOINT dry_run")
            try connection.execute(
                """
                INSERT INTO sb_pending_updates (account_id, resource, resource_id, method, body, client_id,
                                                request_id, apply_at, user_id)
                VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9)
                """,
                [
                    caller.accountID, resource.rawValue, id, method,
                    SQLValue.json(String(decoding: try JSONWriter.encode(body), as: UTF8.self)), caller.clientID,
                    caller.requestID, caller.visibleAt(now), caller.userID,
                ])
        }
    }

    /// Applies every update due at `now` (of one account, or of all), oldest first. Called before
    /// each API request of the account and by each webhook dispatcher pass, so an update becomes
    /// readable and its event is recorded once it is due even if nobody reads it.
    static func settle(_ database: Database, account: UUID?, now: Date) throws {
        let condition = "($1::uuid IS NULL OR p.account_id = $1) AND p.apply_at <= $2"
        let due = try database.withConnection {
            try $0.execute("SELECT 1 FROM sb_pending_updates p WHERE \(condition) LIMIT 1", [account, now]).rowCount
        }
        guard due > 0 else { return }
        try database.transaction { connection in
            // Rows another process is applying are waited for, then skipped (it deleted them).
            let rows = try connection.execute(
                """
                SELECT p.id, p.account_id, a.region, p.resource, p.resource_id, p.method, p.body::text AS body,
                       p.client_id, p.request_id, p.apply_at, p.user_id
                FROM sb_pending_updates p JOIN sb_accounts a ON a.id = p.account_id
                WHERE \(condition) ORDER BY p.id FOR UPDATE OF p
                """, [account, now]
            ).rows
            for row in rows {
                let caller = APIServer.Caller(
                    clientID: try row.string("client_id"), accountID: try row.uuid("account_id"),
                    region: try row.string("region"), requestID: try row.optionalString("request_id"),
                    writeDelayMilliseconds: 0, userID: try row.optionalUUID("user_id"))
                // The table's CHECKs and jsonb make an undecodable row impossible; should one
                // appear anyway it can never apply, so it goes rather than block the queue.
                guard let update = try? PendingUpdate(row) else {
                    try connection.execute("DELETE FROM sb_pending_updates WHERE id = $1", [try row.int("id")])
                    continue
                }
                // Each update in its own savepoint: one that cannot be applied becomes an error
                // event and is dropped, and never holds up the account's other updates.
                try connection.execute("SAVEPOINT pending_update")
                do {
                    try update.apply(connection, caller: caller, now: try row.date("apply_at"), database: database)
                    try connection.execute("RELEASE SAVEPOINT pending_update")
                } catch {
                    try connection.execute("ROLLBACK TO SAVEPOINT pending_update")
                    // What was fine when accepted but not when applied (say, the resource was
                    // deleted in between) is what Smokeball reports as an error event.
                    let reason = (error as? SandboxFailure)?.detail ?? "The change could not be applied"
                    try update.recordFailure(connection, reason: reason, caller: caller)
                }
                try connection.execute("DELETE FROM sb_pending_updates WHERE id = $1", [try row.int("id")])
            }
        }
    }
}

extension SandboxFailure {
    /// What went wrong, in words.
    var detail: String {
        switch self {
        case .problem(_, _, let detail, _), .oauth(_, _, let detail, _): detail
        case .page(_, let message): message
        case .tooManyRequests: "Too Many Requests"
        case .s3(_, _, let message): message
        }
    }
}
