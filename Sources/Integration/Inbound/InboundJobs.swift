import Foundation

/// The job kinds inbound work runs as, and their keys.
public enum InboundJobs {
    /// Applies one recorded webhook delivery (`smokeball_webhook_events`).
    public static let processWebhookEvent = "process_webhook_event"

    /// One processing job per event: a re-enqueue of the same event is the same job.
    public static func eventKey(_ id: UUID) -> String { "event:" + id.uuidString.lowercased() }
}

/// The payload of a `process_webhook_event` job.
public struct WebhookEventPayload: Codable, Sendable {
    public let eventID: UUID

    public init(eventID: UUID) {
        self.eventID = eventID
    }

    enum CodingKeys: String, CodingKey {
        case eventID = "event_id"
    }
}
