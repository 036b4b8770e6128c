import Foundation
import PostgreSQL
import Smokeball

/// `ensure_webhook_subscription`: keeps the firm's one webhook subscription (see
/// `WebhookSubscriptions.ensure`) from the background, through the firm's token provider. The
/// callback enqueues it when the ensure it makes while the person waits fails, so a firm never
/// stays connected without webhooks because Smokeball hiccuped at that moment.
public struct EnsureWebhookSubscriptionJob: JobHandler {
    public static let kind = "ensure_webhook_subscription"
    public var kind: String { Self.kind }

    let tokens: SmokeballTokenProvider
    let subscriptions: WebhookSubscriptions

    public init(tokens: SmokeballTokenProvider, subscriptions: WebhookSubscriptions) {
        self.tokens = tokens
        self.subscriptions = subscriptions
    }

    /// What the job leaves as its result.
    struct Result: Encodable, Sendable {
        let subscriptionID: String
        let created: Bool
        let duplicatesDeleted: Int

        enum CodingKeys: String, CodingKey {
            case subscriptionID = "subscription_id"
            case created
            case duplicatesDeleted = "duplicates_deleted"
        }
    }

    /// Enqueues the ensure for the firm `connection`'s transaction is bound to (one pending per
    /// firm: repeated requests coalesce).
    @discardableResult
    public static func enqueue(_ connection: Connection) throws -> UUID {
        try JobQueue.enqueue(connection, kind: kind, key: "firm", priority: .automatic)
    }

    public func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        do {
            let ensured = try tokens.withAccess(context.scope) { client, access in
                try subscriptions.ensure(enter: context.scope.enter, client: client, access: access, lane: .background)
            }
            return Result(
                subscriptionID: ensured.subscriptionID, created: ensured.created,
                duplicatesDeleted: ensured.duplicatesDeleted)
        } catch let error as SmokeballTokenError where error.code != .unavailable {
            // Another attempt cannot help until the firm reconnects (which ensures again).
            throw JobError(.failed, error.description, retryable: false)
        } catch let error as WebhookSubscriptions.Failure where error.code == .notConnected {
            throw JobError(.failed, error.description, retryable: false)
        }
    }
}
