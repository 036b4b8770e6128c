import Foundation
import PostgreSQL
import Smokeball

/// One matter's sync, step by step: contact → matter type → matter → documents. Each step is
/// safe to re-run (stored links, durable intents), so a job killed anywhere is simply run again.
/// Shared by `sync_matter` and `sync_matters`.
public struct MatterSyncer: Sendable {
    public let contacts: ContactSync
    public let matterTypes: any MatterTypeResolving
    public let matters: MatterSync
    /// nil in a build without the documents part: the sync stops after the matter.
    public let documents: (any MatterDocumentsSyncing)?

    public init(
        contacts: ContactSync = ContactSync(), matterTypes: any MatterTypeResolving, matters: MatterSync = MatterSync(),
        documents: (any MatterDocumentsSyncing)?
    ) {
        self.contacts = contacts
        self.matterTypes = matterTypes
        self.matters = matters
        self.documents = documents
    }

    /// What one matter's sync did (`sync_matter`'s result).
    public struct Result: Encodable, Sendable, Equatable {
        public let matterID: UUID
        public let smokeballMatterID: String
        public let linkStatus: String
        public let contact: ContactLink
        public let matter: MatterLink.Change
        public let documents: DocumentsSyncSummary?

        enum CodingKeys: String, CodingKey {
            case matterID = "matter_id"
            case smokeballMatterID = "smokeball_matter_id"
            case linkStatus = "link_status"
            case contact, matter, documents
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(matterID.uuidString.lowercased(), forKey: .matterID)
            try container.encode(smokeballMatterID, forKey: .smokeballMatterID)
            try container.encode(linkStatus, forKey: .linkStatus)
            try container.encode(contact, forKey: .contact)
            try container.encode(matter, forKey: .matter)
            // nil is null, never a missing key.
            try container.encode(documents, forKey: .documents)
        }
    }

    /// Syncs one matter of the scope's firm in `session`. A failure that another attempt cannot
    /// mend (`finalAttempt` also makes a retryable one final) leaves a history row; what is
    /// thrown is a readable `JobError`.
    public func sync(
        matterID: UUID, scope: any TenantScope, database: Database, session: SmokeballSession, finalAttempt: Bool
    ) throws -> Result {
        var step = SyncLog.Step.contact
        do {
            let matter = try MatterSync.load(matterID: matterID, scope: scope, database: database)
            guard let clientID = matter.clientID else {
                step = .matter
                throw JobError(SyncFailure.notFound, "the matter has no client to link in Smokeball", retryable: false)
            }
            let contact = try contacts.sync(
                clientID: clientID, matterID: matterID, scope: scope, database: database, session: session)
            step = .matter
            let type = try matterTypes.resolve(matter.caseType, scope: scope, session: session)
            let link = try matters.sync(
                matter, contactID: contact.contactID, type: type, scope: scope, database: database, session: session)
            step = .document
            let summary = try documents?.sync(
                matterID: matterID, smokeballMatterID: link.smokeballMatterID, scope: scope, session: session)
            return Result(
                matterID: matterID, smokeballMatterID: link.smokeballMatterID, linkStatus: link.linkStatus,
                contact: contact, matter: link.change, documents: summary)
        } catch let error as SmokeballError where error.code == .unauthorized {
            // The token provider refreshes the token and runs the sync once more.
            throw error
        } catch {
            let readable = SyncFailure.jobError(error, doing: "syncing the \(step.rawValue)")
            // Token and not-found failures are about the job, not a step of the matter.
            if let failure = readable as? JobError, !failure.retryable || finalAttempt,
                failure.code != SyncFailure.notConnected, failure.code != JobError.Code.leaseLost
            {
                try? database.transaction { connection in
                    _ = try scope.enter(connection)
                    try SyncLog.record(
                        connection, step: step, outcome: .failed, matterID: matterID, error: failure.message)
                }
            }
            throw readable
        }
    }
}

/// `sync_matter`: one matter into Smokeball (`MatterSyncer`), through the firm's token
/// provider, on the interactive lane when a person clicked, else the background lane.
public struct SyncMatterJob: JobHandler {
    public var kind: String { SyncJobs.syncMatter }

    let tokens: SmokeballTokenProvider
    let syncer: MatterSyncer

    public init(tokens: SmokeballTokenProvider, syncer: MatterSyncer) {
        self.tokens = tokens
        self.syncer = syncer
    }

    public func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        let payload = try job.payload(SyncMatterPayload.self)
        let lane: SmokeballLane = job.priority == .interactive ? .interactive : .background
        do {
            return try tokens.withAccess(context.scope) { client, access in
                try syncer.sync(
                    matterID: payload.matterID, scope: context.scope, database: context.database,
                    session: SmokeballSession(client: client, access: access, lane: lane),
                    finalAttempt: job.attempts >= job.maxAttempts)
            }
        } catch {
            throw SyncFailure.jobError(error, doing: "syncing the matter")
        }
    }
}
