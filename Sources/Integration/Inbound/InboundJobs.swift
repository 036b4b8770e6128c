import Foundation

/// The job kinds of inbound processing (issue #13) and their keys.
public enum InboundJobs {
    /// Processes one row of `smokeball_webhook_events` (enqueued by the webhooks route).
    public static let processWebhookEvent = "process_webhook_event"

    /// One pending job per event: a duplicate enqueue coalesces.
    public static func eventKey(_ id: UUID) -> String { "event:" + id.uuidString.lowercased() }
}

/// The payload of `process_webhook_event`.
public struct WebhookEventPayload: Codable, Sendable {
    public var eventID: UUID

    public init(eventID: UUID) {
        self.eventID = eventID
    }

    enum CodingKeys: String, CodingKey {
        case eventID = "event_id"
    }
}
