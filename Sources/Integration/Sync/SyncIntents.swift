import Foundation
import PostgreSQL

/// A durable intent to create one thing in Smokeball (migration 031): committed *before* the
/// request, so a worker killed at any point leaves a record of what it may have made.
public struct SyncIntent: Sendable, Equatable {
    public enum Resource: String, Sendable, CaseIterable {
        case contact, matter, folder, file
    }

    public enum State: String, Sendable {
        /// Committed before the request: Smokeball may or may not have it.
        case intended
        /// Smokeball answered with `externalID`; the CaseHug row does not hold it yet.
        case accepted
        /// The CaseHug row holds the link.
        case done
        /// Refused, or proved never made.
        case abandoned
    }

    public let id: UUID
    public let resource: Resource
    /// The CaseHug row it is made for: the client (contact), the matter (matter, folder), the upload (file).
    public let localID: UUID
    /// The `RequestId` the create sends (and its events carry).
    public let requestID: String
    public let externalSystemID: String?
    /// What else identifies it in a listing (a folder's or a file's name).
    public let details: [String: String]
    public let externalID: String?
    public let state: State
    public let createdAt: Date

    /// Whether the request may already have reached Smokeball (an open intent found by a re-run).
    public var isOpen: Bool { state == .intended || state == .accepted }
}

/// Reading and moving intents, in the caller's transaction (bound to the firm). The pattern for
/// every create:
///
/// 1. in a transaction: `open(resource, localID)`; when one exists, a previous run may have made
///    the thing: look for it (its `externalID`, else a listing) before anything else;
/// 2. otherwise `begin(...)` and commit;
/// 3. send the create with `intent.requestID`;
/// 4. in a transaction: `accept(id, externalID)` at once, then store the link on the CaseHug
///    row and `finish(id)` (both may be one transaction).
public enum SyncIntents {
    static let columns =
        "id, resource, local_id, request_id, external_system_id, details, external_id, state, created_at"

    /// The open (intended or accepted) intent for this resource of this row, if any.
    public static func open(_ connection: Connection, _ resource: SyncIntent.Resource, localID: UUID) throws
        -> SyncIntent?
    {
        try connection.execute(
            """
            SELECT \(columns) FROM smokeball_sync_intents
            WHERE firm_id = app_current_firm() AND resource = $1 AND local_id = $2::uuid
              AND state IN ('intended', 'accepted')
            """, [resource.rawValue, localID]
        ).first.map(intent(from:))
    }

    /// Records a new intent with a fresh request id (or `requestID`: the one several intents
    /// share when one request creates them all, as a bulk file upload does). Throws a unique
    /// violation when one is open already (call `open` first, in the same transaction).
    public static func begin(
        _ connection: Connection, _ resource: SyncIntent.Resource, localID: UUID, externalSystemID: String?,
        details: [String: String] = [:], requestID: String? = nil
    ) throws -> SyncIntent {
        let json = String(decoding: try JSONEncoder().encode(details), as: UTF8.self)
        return try intent(
            from: connection.execute(
                """
                INSERT INTO smokeball_sync_intents (firm_id, resource, local_id, request_id, external_system_id, details)
                VALUES (app_current_firm(), $1, $2::uuid, $3, $4, $5::jsonb)
                RETURNING \(columns)
                """,
                [
                    resource.rawValue, localID, requestID ?? UUID().uuidString.lowercased(), externalSystemID,
                    SQLValue.json(json),
                ]
            ).single())
    }

    /// Smokeball answered the create with this id.
    public static func accept(_ connection: Connection, _ intentID: UUID, externalID: String) throws {
        try move(connection, intentID, to: .accepted, externalID: externalID)
    }

    /// The CaseHug row now holds the link (`externalID` when it was found rather than answered).
    public static func finish(_ connection: Connection, _ intentID: UUID, externalID: String? = nil) throws {
        try move(connection, intentID, to: .done, externalID: externalID)
    }

    /// Smokeball refused the create, or a re-run proved it was never made: a new intent may follow.
    public static func abandon(_ connection: Connection, _ intentID: UUID) throws {
        try move(connection, intentID, to: .abandoned, externalID: nil)
    }

    static func move(_ connection: Connection, _ intentID: UUID, to state: SyncIntent.State, externalID: String?)
        throws
    {
        try connection.execute(
            """
            UPDATE smokeball_sync_intents SET state = $2, external_id = coalesce($3, external_id), updated_at = now()
            WHERE firm_id = app_current_firm() AND id = $1::uuid
            """, [intentID, state.rawValue, externalID])
    }

    static func intent(from row: Row) throws -> SyncIntent {
        let details = (try row.json("details") as? [String: Any])?.compactMapValues { $0 as? String } ?? [:]
        return SyncIntent(
            id: try row.uuid("id"),
            resource: SyncIntent.Resource(rawValue: try row.string("resource")) ?? .contact,
            localID: try row.uuid("local_id"), requestID: try row.string("request_id"),
            externalSystemID: try row.optionalString("external_system_id"), details: details,
            externalID: try row.optionalString("external_id"),
            state: SyncIntent.State(rawValue: try row.string("state")) ?? .intended,
            createdAt: try row.date("created_at"))
    }
}
