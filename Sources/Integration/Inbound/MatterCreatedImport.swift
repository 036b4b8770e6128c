import Basics
import Foundation
import PostgreSQL
import Smokeball

/// A `matter.created` event with the setting `import_new_matters` on: that one matter is imported
/// as `import_matters` imports each matter of a page (docs/inbound.md, "Importing existing
/// matters"), through the same code: re-read, the reverse type mapping, the same skips (linked,
/// ours by `externalSystemId`, deleted, leads, other areas), its client found or created, in one
/// transaction under the import's per-firm lock. Duplicate events and re-runs find the matter
/// linked and change nothing.
struct MatterCreatedImport {
    let tokens: SmokeballTokenProvider
    let importer: ImportMattersJob

    static let notReadableYet = JobError(
        JobError.Code(rawValue: "smokeball_settling"),
        "Smokeball has not made the new matter readable yet; a later attempt reads it again", retryable: true)

    func run(_ smokeballID: String, _ context: JobContext) throws -> WebhookEventJob.Result {
        let linked = try context.database.transaction(readOnly: true) { connection in
            _ = try context.scope.enter(connection)
            return try WebhookEventJob.linkedMatter(connection, smokeballID) != nil
        }
        // A duplicate delivery, or our own matter linked by its sync: no request.
        if linked { return WebhookEventJob.Result(status: .ignored, reason: "already_linked") }
        let counts = try tokens.withAccess(context.scope) { client, access -> ImportMattersJob.Counts? in
            let session = SmokeballSession(client: client, access: access, lane: .background)
            let matter: SmokeballMatter
            do {
                let read: SmokeballResult<SmokeballMatter> = try client.get(
                    "/matters/" + PercentEncoding.encode(smokeballID), access: access, lane: session.lane)
                matter = read.value
            } catch let error as SmokeballError where error.code == .notFound {
                // A `*.created` event is sent when the create is accepted, before the matter may
                // be readable (FACTS.md: eventual consistency): try again later.
                throw Self.notReadableYet
            } catch let error as SmokeballError where error.upstreamStatus == 403 {
                return nil
            }
            var counts = ImportMattersJob.Counts()
            try importer.importPage(
                [matter], mapping: try importer.reverseMapping(context, session), counts: &counts, context: context,
                session: session)
            return counts
        }
        guard let counts else { return WebhookEventJob.Result(status: .ignored, reason: "not_readable") }
        if counts.imported == 1 { return WebhookEventJob.Result(status: .applied, reason: nil) }
        let reason =
            counts.skippedLinked > 0
            ? "already_linked"
            : counts.skippedOurs > 0
                ? "ours"
                : counts.skippedDeleted > 0 ? "deleted" : counts.skippedLeads > 0 ? "lead" : "other_area"
        return WebhookEventJob.Result(status: .ignored, reason: reason)
    }
}
