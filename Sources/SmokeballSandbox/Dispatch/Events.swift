import FastCGI
import Foundation
import PostgreSQL

/// Changes in an account, recorded for webhook delivery.
///
/// A payload is taken when the event happens, in the transaction that makes the change, so a
/// notification describes the resource as it was then: a GET made after a later change (or a
/// notification that arrives out of order) shows something newer. That is what lets the
/// receiver tell stale notifications from fresh ones (by `versionId`, `lastUpdated`, or
/// `timestamp`), and why Smokeball tells integrations to treat payloads as hints and re-read.
enum Events {
    /// Every type the sandbox emits (`Webhooks.eventTypes` lists what may be subscribed to,
    /// which is more). The webhook schema test makes each of these happen and validates it, so
    /// a type added here without a schema fails that test.
    static let emitted = [
        "matter.created", "matter.updated", "matter.closed", "matter.deleted",
        "contact.created", "contact.updated", "contact.deleted",
        "files.updated", "memo.created", "error", "noop",
    ]

    /// `caller` nil: a firm user working in Smokeball itself (source `Smokeball`), `firmUser`.
    /// The event's `userId` is the caller's user, or that firm user.
    static func record(
        _ connection: Connection, account: UUID, type: String, caller: APIServer.Caller?, firmUser: UUID? = nil,
        payload: [String: Any]
    ) throws {
        precondition(emitted.contains(type), "event type \(type) is not in Events.emitted")
        try connection.execute(
            """
            INSERT INTO sb_events (account_id, type, source, request_id, client_id, user_id, payload)
            VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
            """,
            [
                account, type, caller == nil ? "Smokeball" : "API", caller?.requestID, caller?.clientID,
                caller?.userID ?? firmUser,
                SQLValue.json(String(decoding: try JSONWriter.encode(payload), as: UTF8.self)),
            ])
    }

    /// The payload of an `error` event, as Smokeball publishes it: what went wrong, and the
    /// resource (lower-case name and id) the failed write was about.
    static func error(message: String, resourceName: String, resourceID: UUID) -> [String: Any] {
        ["message": message, "resourceName": resourceName, "resourceId": resourceID.uuidString.lowercased()]
    }

    /// A resource's GET representation as a notification carries it (Smokeball's published
    /// `matter.updated` sample): the same properties, except that the resource's own `href`
    /// goes and every link is `{id, rel}` (`rel` the linked collection: `Contacts`,
    /// `MatterTypes`, `Staff`, ...) instead of `{id, href}`. Render the representation with an
    /// empty origin, so each link's `href` is its path.
    static func payload(_ representation: [String: Any]) -> [String: Any] {
        var payload = representation
        payload["href"] = nil
        for (key, value) in payload { payload[key] = links(value) }
        return payload
    }

    static let relations = [
        "contacts": "Contacts", "mattertypes": "MatterTypes", "staff": "Staff", "matters": "Matters",
    ]

    static func links(_ value: Any) -> Any {
        if let object = value as? [String: Any] {
            if let href = object["href"] as? String, let id = object["id"] {
                let collection = href.split(separator: "/").first.map(String.init) ?? ""
                return ["id": id, "rel": relations[collection] ?? collection] as [String: Any]
            }
            return object.mapValues(links)
        }
        if let array = value as? [Any] { return array.map(links) }
        return value
    }
}
