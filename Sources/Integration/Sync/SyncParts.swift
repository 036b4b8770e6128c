import Foundation
import PostgreSQL
import Smokeball

/// One Smokeball conversation inside a job: the firm's client, its access and the rate-limit lane
/// (interactive for a click, background for triggers and bulk). Not `Sendable`, like the client:
/// made inside `SmokeballTokenProvider.withAccess` and used on that thread only.
public struct SmokeballSession {
    public let client: SmokeballClient
    public let access: SmokeballAccess
    public let lane: SmokeballLane

    public init(client: SmokeballClient, access: SmokeballAccess, lane: SmokeballLane) {
        self.client = client
        self.access = access
        self.lane = lane
    }
}

/// What a matter's case type asks of Smokeball's matter types (see `MatterTypeResolving`).
public struct MatterTypeRequest: Sendable, Equatable {
    /// The CaseHug case type (`case_types.key`) and what people call it.
    public var caseType: String
    public var displayName: String
    /// The built-in mapping: `case_types.smokeball_category` and `.smokeball_matter_type`.
    public var category: String
    public var builtInName: String

    public init(caseType: String, displayName: String, category: String, builtInName: String) {
        self.caseType = caseType
        self.displayName = displayName
        self.category = category
        self.builtInName = builtInName
    }
}

/// The Smokeball matter type a matter is created with, and the `clientRole` to send.
public struct ResolvedMatterType: Sendable, Equatable, Codable {
    public enum Source: String, Sendable, Codable {
        /// The firm's `case_type_mappings` entry (a name or an id).
        case custom
        /// `case_types`' name within its category.
        case builtIn = "built_in"
        /// The category's general type.
        case general
    }

    public var id: String
    public var name: String
    public var category: String?
    public var location: String?
    /// The first of the type's `representativeOptions`, or nil when it lists none.
    public var clientRole: String?
    public var source: Source

    public init(
        id: String, name: String, category: String?, location: String?, clientRole: String?, source: Source
    ) {
        self.id = id
        self.name = name
        self.category = category
        self.location = location
        self.clientRole = clientRole
        self.source = source
    }
}

/// Finds the matter type for a case type: the firm's custom mapping, the built-in mapping, the
/// category's general type (the settings and the per-firm cache are the implementation's). A type
/// that cannot be found throws a `JobError` (not retryable) whose message is
/// "configure a custom mapping for <display name>".
public protocol MatterTypeResolving: Sendable {
    func resolve(_ request: MatterTypeRequest, scope: any TenantScope, session: SmokeballSession) throws
        -> ResolvedMatterType
}

/// What putting a matter's approved uploads into Smokeball did.
public struct DocumentsSyncSummary: Sendable, Equatable, Codable {
    /// The matter's documents folder, once it exists.
    public var folderID: String?
    public var uploaded: Int
    /// Approved uploads already in Smokeball.
    public var skipped: Int
    /// Uploads that failed (each has its history row); the others went on.
    public var failed: Int

    public init(folderID: String?, uploaded: Int, skipped: Int, failed: Int) {
        self.folderID = folderID
        self.uploaded = uploaded
        self.skipped = skipped
        self.failed = failed
    }

    enum CodingKeys: String, CodingKey {
        case folderID = "folder_id"
        case uploaded, skipped, failed
    }
}

/// Puts a linked matter's approved uploads that have no `smokeball_file_id` into its one
/// documents folder (setting `documents_folder`, default "CaseHug"), crash-safely (intents),
/// each document's failure recorded and the others going on.
public protocol MatterDocumentsSyncing: Sendable {
    func sync(matterID: UUID, smokeballMatterID: String, scope: any TenantScope, session: SmokeballSession) throws
        -> DocumentsSyncSummary
}
