import Foundation
import PostgreSQL

/// The sync job kinds and what they carry: the contract between what enqueues them (the `sync`
/// route, the host app's triggers in migration 033) and the worker's handlers.
///
/// | kind | key | payload | enqueued by |
/// | --- | --- | --- | --- |
/// | `sync_matter` | `matter:<id>` | `{"matter_id"}` | the route (interactive), triggers (automatic) |
/// | `sync_matters` | `all` for sync_all, none for a list | `{"matter_ids"}` or `{"all": true}` | the route (bulk) |
/// | `pull_matters` | `firm` | `{}` | the route (interactive) |
/// | `push_contact` | `contact:<client id>` | `{"client_id"}` | the clients trigger (automatic) |
///
/// Keys make bursts coalesce: while a `sync_matter` for a matter is pending, another enqueue for
/// it joins that job.
public enum SyncJobs {
    public static let syncMatter = "sync_matter"
    public static let syncMatters = "sync_matters"
    public static let pullMatters = "pull_matters"
    public static let pushContact = "push_contact"

    /// The most matter ids one `sync_matters` request may name.
    public static let maxBulkMatters = 500

    public static func matterKey(_ matterID: UUID) -> String { "matter:" + matterID.uuidString.lowercased() }
    public static func contactKey(_ clientID: UUID) -> String { contactKeyPrefix + clientID.uuidString.lowercased() }
    /// As the clients trigger of migration 033 writes it.
    public static let contactKeyPrefix = "contact:"
    public static let allMattersKey = "all"
    public static let firmKey = "firm"
}

/// `sync_matter`'s payload.
public struct SyncMatterPayload: Codable, Sendable, Equatable {
    public var matterID: UUID

    public init(matterID: UUID) { self.matterID = matterID }

    enum CodingKeys: String, CodingKey { case matterID = "matter_id" }
}

/// `sync_matters`' payload: the listed matters, or every matter of the firm.
public struct BulkSyncPayload: Codable, Sendable, Equatable {
    public var matterIDs: [UUID]?
    public var all: Bool

    public init(matterIDs: [UUID]) {
        self.matterIDs = matterIDs
        all = false
    }

    public static let everyMatter = BulkSyncPayload(all: true)

    private init(all: Bool) {
        matterIDs = nil
        self.all = all
    }

    enum CodingKeys: String, CodingKey {
        case matterIDs = "matter_ids"
        case all
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        matterIDs = try container.decodeIfPresent([UUID].self, forKey: .matterIDs)
        all = try container.decodeIfPresent(Bool.self, forKey: .all) ?? false
    }
}

/// `push_contact`'s payload.
public struct PushContactPayload: Codable, Sendable, Equatable {
    public var clientID: UUID

    public init(clientID: UUID) { self.clientID = clientID }

    enum CodingKeys: String, CodingKey { case clientID = "client_id" }
}
