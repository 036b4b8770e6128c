import Foundation
import PostgreSQL

/// The sync history (`integration_sync_logs`): one row per step of a sync (contact, matter,
/// folder, document) with what happened, the Smokeball id and a readable error. Firms read it
/// through the `sync` route; nothing in it may hold a secret, and `error_message` holds only
/// messages the service composed (no upstream bodies).
public enum SyncLog {
    /// The step a row is about (`action` is `<step>.<outcome>`, e.g. `contact.linked`).
    public enum Step: String, Sendable, CaseIterable {
        case contact, matter, folder, document
        /// The firm's webhook subscription (reconciliation found it missing, or gone with the grant).
        case subscription
    }

    /// What the step did.
    public enum Outcome: String, Sendable, CaseIterable {
        /// Made in Smokeball by this sync.
        case created
        /// Found in Smokeball and linked (an existing contact, a create recovered after a crash).
        case linked
        /// Changed in Smokeball (a PATCH or PUT of what changed).
        case updated
        /// Changed in CaseHug to follow Smokeball, by a reconciliation (a webhook it never got).
        case reconciled
        /// Nothing to do (already linked and unchanged, or already uploaded).
        case skipped
        case failed

        /// The `status` column (`pending`, `success`, `failed`, `skipped`).
        var status: String {
            switch self {
            case .created, .linked, .updated, .reconciled: "success"
            case .skipped: "skipped"
            case .failed: "failed"
            }
        }
    }

    /// Appends a row in the caller's transaction (bound to the firm).
    public static func record(
        _ connection: Connection, step: Step, outcome: Outcome, matterID: UUID?, uploadID: UUID? = nil,
        externalID: String? = nil, details: [String: String] = [:], error: String? = nil
    ) throws {
        let json = String(decoding: try JSONEncoder().encode(details), as: UTF8.self)
        try connection.execute(
            """
            INSERT INTO integration_sync_logs
                (firm_id, integration_id, matter_id, upload_id, action, status, external_id, details, error_message)
            VALUES (app_current_firm(),
                (SELECT id FROM firm_integrations WHERE firm_id = app_current_firm() AND platform = 'smokeball'),
                $1::uuid, $2::uuid, $3, $4, $5, $6::jsonb, $7)
            """,
            [
                matterID, uploadID, "\(step.rawValue).\(outcome.rawValue)", outcome.status, externalID,
                SQLValue.json(json), error.map { String($0.prefix(1000)) },
            ])
    }
}
