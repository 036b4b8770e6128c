import Foundation
import PostgreSQL
import Smokeball

/// `pull_matters`: the firm's Smokeball matters (every page) and the CaseHug matter each is
/// linked to: by the CaseHug matter's stored `smokeball_matter_id`, else by an
/// `externalSystemId` that is one of the firm's matter ids. Read-only: it links nothing.
public struct PullMattersJob: JobHandler {
    public var kind: String { SyncJobs.pullMatters }

    let tokens: SmokeballTokenProvider

    public init(tokens: SmokeballTokenProvider) {
        self.tokens = tokens
    }

    struct Item: Encodable, Sendable {
        let smokeballMatterID: String
        let number: String?
        let description: String?
        let status: String?
        let matterTypeID: String?
        let casehugMatterID: UUID?

        enum CodingKeys: String, CodingKey {
            case smokeballMatterID = "smokeball_matter_id"
            case number, description, status
            case matterTypeID = "matter_type_id"
            case casehugMatterID = "casehug_matter_id"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(smokeballMatterID, forKey: .smokeballMatterID)
            try container.encode(number, forKey: .number)
            try container.encode(description, forKey: .description)
            try container.encode(status, forKey: .status)
            try container.encode(matterTypeID, forKey: .matterTypeID)
            try container.encode(casehugMatterID?.uuidString.lowercased(), forKey: .casehugMatterID)
        }
    }

    struct Result: Encodable, Sendable {
        let matters: [Item]
        let total: Int
        let linked: Int
    }

    public func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        let lane: SmokeballLane = job.priority == .interactive ? .interactive : .background
        let remote: [SmokeballMatter]
        do {
            remote = try tokens.withAccess(context.scope) { client, access in
                try client.all("/matters", access: access, lane: lane)
            }
        } catch {
            throw SyncFailure.jobError(error, doing: "listing the firm's Smokeball matters")
        }
        let (bySmokeballID, firmMatters) = try context.database.transaction(readOnly: true) { connection in
            _ = try context.scope.enter(connection)
            var links: [String: UUID] = [:]
            var ids = Set<UUID>()
            for row in try connection.execute(
                "SELECT id, smokeball_matter_id FROM matters WHERE firm_id = app_current_firm()"
            ).rows {
                let id = try row.uuid("id")
                ids.insert(id)
                if let linked = try row.optionalString("smokeball_matter_id") { links[linked] = id }
            }
            return (links, ids)
        }
        let items = remote.compactMap { matter -> Item? in
            guard let id = matter.id else { return nil }
            let byExternalID = matter.externalSystemId.flatMap(UUID.init(uuidString:)).flatMap {
                firmMatters.contains($0) ? $0 : nil
            }
            return Item(
                smokeballMatterID: id, number: matter.number, description: matter.description, status: matter.status,
                matterTypeID: matter.matterType?.id, casehugMatterID: bySmokeballID[id] ?? byExternalID)
        }
        return Result(matters: items, total: items.count, linked: items.filter { $0.casehugMatterID != nil }.count)
    }
}
