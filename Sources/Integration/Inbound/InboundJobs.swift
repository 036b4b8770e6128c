import Foundation

/// The job kinds inbound work runs as, and their keys.
public enum InboundJobs {
    /// Applies one recorded webhook delivery (`smokeball_webhook_events`). Not a row of `jobs`:
    /// the worker claims stored events directly (migration 045) and runs them under this kind.
    public static let processWebhookEvent = "process_webhook_event"
}

/// The payload of a `process_webhook_event` work item (`app_claim_webhook_event` builds it).
public struct WebhookEventPayload: Codable, Sendable {
    public let eventID: UUID

    public init(eventID: UUID) {
        self.eventID = eventID
    }

    enum CodingKeys: String, CodingKey {
        case eventID = "event_id"
    }
}
