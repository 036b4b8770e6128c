import Foundation
import PostgreSQL

/// The status route's inbound fields (docs/inbound.md, "Status"): the last webhook received,
/// events pending and failed, the delivery path check, any import's progress and failed links.
/// Read by `statusQuery` in its one statement: each part is one probe of an index of migration
/// 039 (or 023), and every count stops at `countLimit`, so the status answer's cost does not
/// grow with a firm's history.
extension StatusHandler {
    /// Counts stop here: a count of `countLimit` means that many or more.
    static let countLimit = 1000

    static let inboundColumns = """
        w.event_type AS webhook_last_type, w.created_at AS webhook_last_at,
        i.webhook_noop_sent_at, i.webhook_last_noop_at,
        ev.pending AS events_pending, ev.failed AS events_failed,
        sm.import_job_id AS import_id, sm.import_status, sm.import_progress_done AS import_done,
        sm.import_progress_total AS import_total, sm.import_progress_failed AS import_failed,
        sm.import_last_error AS import_error, sm.import_created_at, sm.import_started_at, sm.import_finished_at,
        now() AS import_now, coalesce(sm.failed_matters, 0) AS failed_matters, sm.failed_matter_id,
        sm.failed_matter_at, coalesce(sm.failed_contacts, 0) AS failed_contacts, sm.failed_client_id,
        sm.failed_client_at
        """

    static let inboundJoins = """
        LEFT JOIN LATERAL (
            SELECT (SELECT count(*) FROM (SELECT 1 FROM smokeball_webhook_events x
                        WHERE x.firm_id = app_current_firm() AND NOT x.processed
                        LIMIT \(countLimit)) p) AS pending,
                   (SELECT count(*) FROM (SELECT 1 FROM smokeball_webhook_events x
                        WHERE x.firm_id = app_current_firm() AND x.processed
                            AND (NOT x.processed OR x.status = 'failed')
                        LIMIT \(countLimit)) f) AS failed
        ) ev ON true
        LEFT JOIN LATERAL (
            SELECT e.event_type, e.created_at FROM smokeball_webhook_events e
            WHERE e.firm_id = app_current_firm() ORDER BY e.created_at DESC LIMIT 1
        ) w ON true
        LEFT JOIN smokeball_inbound_summary sm ON sm.firm_id = app_current_firm()
        """

    /// Fills the inbound fields from `statusQuery`'s row.
    static func inbound(from row: Row, into answer: inout StatusAnswer) throws {
        if let type = try row.optionalString("webhook_last_type") {
            answer.lastWebhook = StatusAnswer.LastWebhook(
                eventType: type, receivedAt: try row.date("webhook_last_at"))
        }
        answer.webhookEvents = StatusAnswer.WebhookEvents(
            pending: Int(try row.int("events_pending")), failed: Int(try row.int("events_failed")))
        answer.webhookDelivery = StatusAnswer.WebhookDelivery(
            noopSentAt: try row.optionalDate("webhook_noop_sent_at"),
            noopArrivedAt: try row.optionalDate("webhook_last_noop_at"))
        if let jobID = try row.optionalUUID("import_id") {
            let status = Job.Status(rawValue: try row.string("import_status")) ?? .dead
            let progress = JobProgress(
                done: Int(try row.int("import_done")), total: try row.optionalInt("import_total").map { Int($0) },
                failed: Int(try row.int("import_failed")))
            let startedAt = try row.optionalDate("import_started_at")
            answer.importProgress = StatusAnswer.ImportProgress(
                jobID: jobID, status: status.rawValue, progress: progress,
                etaSeconds: SyncHandler.etaSeconds(
                    status: status, progress: progress, startedAt: startedAt, now: try row.date("import_now")),
                error: try row.optionalString("import_error"), createdAt: try row.date("import_created_at"),
                startedAt: startedAt, finishedAt: try row.optionalDate("import_finished_at"))
        }
        // The latest of the two kinds; a matter that failed before migration 039 has no time and
        // is the oldest.
        let matter = try row.optionalUUID("failed_matter_id").map { id in
            StatusAnswer.FailedLink(
                resource: "matter", matterID: id, clientID: nil, failedAt: try row.optionalDate("failed_matter_at"),
                message: StatusAnswer.FailedLink.matterMessage)
        }
        let contact = try row.optionalUUID("failed_client_id").map { id in
            StatusAnswer.FailedLink(
                resource: "contact", matterID: nil, clientID: id, failedAt: try row.optionalDate("failed_client_at"),
                message: StatusAnswer.FailedLink.contactMessage)
        }
        let latest: StatusAnswer.FailedLink? =
            if let matter, let contact {
                (contact.failedAt ?? .distantPast) >= (matter.failedAt ?? .distantPast) ? contact : matter
            } else {
                matter ?? contact
            }
        answer.failedLinks = StatusAnswer.FailedLinks(
            matters: Int(try row.int("failed_matters")), contacts: Int(try row.int("failed_contacts")), latest: latest)
    }
}

extension StatusAnswer {
    /// The newest delivery stored for the firm (its payload is not shown).
    struct LastWebhook: Encodable, Equatable {
        var eventType: String
        var receivedAt: Date

        enum CodingKeys: String, CodingKey {
            case eventType = "event_type"
            case receivedAt = "received_at"
        }
    }

    /// Stored events not processed yet, and events whose processing failed (each at most
    /// `StatusHandler.countLimit`).
    struct WebhookEvents: Encodable, Equatable {
        var pending: Int
        var failed: Int
    }

    /// The delivery path, end to end: when the last test event (`noop`) was asked of Smokeball
    /// and when one last arrived. `state`: `verified` (one arrived at or after the last ask),
    /// `waiting` (asked, not arrived since), `unchecked` (never asked, none arrived).
    struct WebhookDelivery: Encodable, Equatable {
        var noopSentAt: Date?
        var noopArrivedAt: Date?

        var state: String {
            switch (noopSentAt, noopArrivedAt) {
            case (nil, nil): "unchecked"
            case (let sent?, let arrived?): arrived >= sent ? "verified" : "waiting"
            case (nil, _?): "verified"
            case (_?, nil): "waiting"
            }
        }

        enum CodingKeys: String, CodingKey {
            case noopSentAt = "noop_sent_at"
            case noopArrivedAt = "noop_arrived_at"
            case state
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encodeIfPresent(noopSentAt, forKey: .noopSentAt)
            try container.encodeIfPresent(noopArrivedAt, forKey: .noopArrivedAt)
            try container.encode(state, forKey: .state)
        }
    }

    /// The firm's newest `import_matters` job, as `GET sync?job_id=` shows it.
    struct ImportProgress: Encodable, Equatable {
        var jobID: UUID
        var status: String
        var progress: JobProgress
        var etaSeconds: Int?
        /// The worker's own words (no PHI), when an attempt failed.
        var error: String?
        var createdAt: Date
        var startedAt: Date?
        var finishedAt: Date?

        enum CodingKeys: String, CodingKey {
            case jobID = "job_id"
            case status, progress, error
            case etaSeconds = "eta_seconds"
            case createdAt = "created_at"
            case startedAt = "started_at"
            case finishedAt = "finished_at"
        }
    }

    /// Creates Smokeball accepted and then refused (an `error` event): matters whose link is
    /// `failed`, clients whose contact create failed and that have no contact since (each at
    /// most `StatusHandler.countLimit`), and the latest of them.
    struct FailedLinks: Encodable, Equatable {
        var matters: Int
        var contacts: Int
        var latest: FailedLink?

        var count: Int { matters + contacts }

        enum CodingKeys: String, CodingKey {
            case count, matters, contacts, latest
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(count, forKey: .count)
            try container.encode(matters, forKey: .matters)
            try container.encode(contacts, forKey: .contacts)
            try container.encodeIfPresent(latest, forKey: .latest)
        }
    }

    /// One failed link. The message is ours: Smokeball's own (which may quote the firm's data,
    /// an email address for one) stays in the history, which the firm reads per matter.
    struct FailedLink: Encodable, Equatable {
        var resource: String
        var matterID: UUID?
        var clientID: UUID?
        /// Nil for a matter that failed before migration 039 recorded when.
        var failedAt: Date?
        var message: String

        static let matterMessage =
            "Smokeball refused to create the matter; its history has Smokeball's reason, and the next sync creates it again"
        static let contactMessage =
            "Smokeball refused to create the client's contact; the history has Smokeball's reason, and the next sync creates it again"

        enum CodingKeys: String, CodingKey {
            case resource, message
            case matterID = "matter_id"
            case clientID = "client_id"
            case failedAt = "failed_at"
        }
    }
}
