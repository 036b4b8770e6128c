import Foundation
import PostgreSQL
import Smokeball

/// Keeps one Smokeball webhook subscription per firm, as Smokeball recommends: after every
/// (re)connection the account's subscriptions are listed, the one that is ours (it points at
/// our webhook URL, or it is the one we recorded) is updated with the current key and types,
/// and only when there is none is one created. Extra copies of ours (left by an older version or
/// by hand) are deleted, so the firm never receives an event twice.
///
/// Ensures that overlap would both find none and both create one: a lease on the firm's row
/// (migration 029) lets one run at a time without holding a lock or a transaction open across
/// the HTTP calls. The others wait for it, then run themselves and find its subscription.
public struct WebhookSubscriptions: Sendable {
    /// The events the integration acts on (issue #11, item 6).
    public static let eventTypes = [
        "matter.created", "matter.updated", "matter.closed", "contact.created", "contact.updated", "contact.deleted",
        "files.updated", "error",
    ]
    /// The subscription's name at Smokeball, as the firm sees it.
    public static let subscriptionName = "CaseHug"

    let database: Database
    let vault: TokenVault
    /// Where Smokeball delivers events (see `OAuthRedirects.webhookURL`).
    public let notificationURL: String
    /// How long an ensure may hold the firm's row before another may take it over.
    var leaseSeconds = 60
    /// How long an ensure waits for another to finish.
    var waitLimit: TimeInterval = 90
    var pollInterval: TimeInterval = 0.05

    public init(database: Database, vault: TokenVault, notificationURL: String) {
        self.database = database
        self.vault = vault
        self.notificationURL = notificationURL
    }

    /// What an ensure left in place.
    public struct Ensured: Sendable, Equatable {
        public var subscriptionID: String
        /// True when a subscription was created, false when ours was updated.
        public var created: Bool
        /// Copies of ours that were deleted.
        public var duplicatesDeleted: Int
    }

    /// Why an ensure could not run.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Code: String, Sendable {
            /// The firm has no active Smokeball connection (or no webhook key).
            case notConnected = "not_connected"
            /// Another ensure held the firm's row for longer than `waitLimit`.
            case busy
        }

        public let code: Code
        public var description: String { "webhook subscription: \(code.rawValue)" }
    }

    /// Ensures the firm's subscription with `access` (a token of the firm's account). `enter`
    /// binds a transaction to the firm and returns its id.
    @discardableResult
    public func ensure(
        enter: (Connection) throws -> UUID, client: SmokeballClient, access: SmokeballAccess,
        lane: SmokeballLane = .interactive
    ) throws -> Ensured {
        let lease = UUID()
        let (firmID, sealedKey, recordedID) = try takeLease(lease, enter: enter)
        do {
            let key = try vault.open(sealedKey, firmID: firmID, platform: "smokeball", column: .webhookSecret)
            let request = WebhookSubscriptionRequest(
                name: Self.subscriptionName, eventTypes: Self.eventTypes, eventNotificationUrl: notificationURL,
                key: key)
            let ours = try client.webhookSubscriptions(access, lane: lane).filter { isOurs($0, recordedID: recordedID) }
            let kept: String
            var duplicates = 0
            let created: Bool
            if let existing = ours.first(where: { $0.id == recordedID }) ?? ours.first, let id = existing.id {
                kept = try client.updateWebhookSubscription(id: id, request, access: access, lane: lane).value.id ?? id
                created = false
                for extra in ours where extra.id != id {
                    guard let extraID = extra.id else { continue }
                    _ = try client.deleteWebhookSubscription(id: extraID, access: access, lane: lane)
                    duplicates += 1
                }
            } else {
                let made = try client.createWebhookSubscription(request, access: access, lane: lane)
                guard let id = made.value.id else {
                    throw SmokeballError(.invalidResponse, upstreamStatus: made.status, requestID: made.requestID)
                }
                kept = id
                created = true
            }
            try database.transaction { connection in
                _ = try enter(connection)
                try connection.execute(
                    """
                    UPDATE firm_integrations
                    SET webhook_subscription_id = $2, webhook_event_types = string_to_array($3, ','),
                        webhook_ensured_at = now(), webhook_ensure_lease_id = NULL,
                        webhook_ensure_lease_until = NULL, updated_at = now()
                    WHERE firm_id = app_current_firm() AND platform = 'smokeball' AND webhook_ensure_lease_id = $1
                    """, [lease, kept, Self.eventTypes.joined(separator: ",")])
            }
            notify(kept, enter: enter, client: client, access: access, lane: lane)
            return Ensured(subscriptionID: kept, created: created, duplicatesDeleted: duplicates)
        } catch {
            releaseLease(lease, enter: enter)
            throw error
        }
    }

    /// Asks Smokeball for a test event (`noop`) to the subscription and records when, so its
    /// arrival (recorded by `WebhookEventJob`) shows that delivery works end to end. Best effort:
    /// the subscription is in place whether or not this goes through.
    ///
    /// The time recorded is the moment before the ask, by the database's clock (which stamps the
    /// arrival too): the noop can arrive and be processed before Smokeball's answer to the ask
    /// is back, and an arrival stamped before the recorded ask would read as still waiting.
    func notify(
        _ subscriptionID: String, enter: (Connection) throws -> UUID, client: SmokeballClient, access: SmokeballAccess,
        lane: SmokeballLane
    ) {
        guard
            let askedAt = try? database.pipelinedRead([Statement("SELECT clock_timestamp() AS now")])[0].single()
                .date("now"),
            (try? client.notifyWebhookSubscription(id: subscriptionID, access: access, lane: lane)) != nil
        else { return }
        _ = try? database.transaction { connection in
            _ = try enter(connection)
            try connection.execute(
                """
                UPDATE firm_integrations SET webhook_noop_sent_at = $1
                WHERE firm_id = app_current_firm() AND platform = 'smokeball'
                """, [askedAt])
        }
    }

    /// A subscription that could not be deleted (or listed), as a disconnect reports it: codes
    /// and statuses only.
    public struct RemovalError: Encodable, Sendable, Equatable {
        public var code: String
        public var subscriptionID: String?
        public var upstreamStatus: Int?

        enum CodingKeys: String, CodingKey {
            case code
            case subscriptionID = "subscription_id"
            case upstreamStatus = "upstream_status"
        }

        public init(_ error: any Error, subscriptionID: String?) {
            let smokeball = error as? SmokeballError
            code =
                smokeball?.code.rawValue ?? (error as? SmokeballTokenError)?.code.rawValue
                ?? (error is DatabaseError ? "database_unavailable" : "failed")
            self.subscriptionID = subscriptionID
            upstreamStatus = smokeball?.upstreamStatus
        }
    }

    /// Deletes every subscription of the account that is ours. A listing that fails is thrown
    /// (the token provider may refresh and call again); a delete that fails is returned, not
    /// thrown, so that a disconnect goes on without it.
    public func remove(
        recordedID: String?, client: SmokeballClient, access: SmokeballAccess, lane: SmokeballLane = .interactive
    ) throws -> (deleted: Int, errors: [RemovalError]) {
        let ours = try client.webhookSubscriptions(access, lane: lane).filter { isOurs($0, recordedID: recordedID) }
        var deleted = 0
        var errors: [RemovalError] = []
        for subscription in ours {
            guard let id = subscription.id else { continue }
            do {
                _ = try client.deleteWebhookSubscription(id: id, access: access, lane: lane)
                deleted += 1
            } catch let error as SmokeballError where error.code == .notFound {
                // Gone already (Smokeball removes them on revoke): nothing left to delete.
            } catch {
                errors.append(RemovalError(error, subscriptionID: id))
            }
        }
        return (deleted, errors)
    }

    /// Ours: it points at our URL, or it is the one we recorded (our URL may have changed since).
    func isOurs(_ subscription: WebhookSubscription, recordedID: String?) -> Bool {
        guard subscription.id != nil else { return false }
        return subscription.eventNotificationUrl == notificationURL
            || (recordedID != nil && subscription.id == recordedID)
    }

    /// Takes the firm's ensure lease, waiting while another ensure holds it. Returns the firm,
    /// the sealed webhook key and the subscription id recorded last time.
    func takeLease(_ lease: UUID, enter: (Connection) throws -> UUID) throws -> (UUID, [UInt8], String?) {
        let deadline = Date().addingTimeInterval(waitLimit)
        while true {
            let taken: (UUID, [UInt8], String?)? = try database.transaction { connection in
                let firmID = try enter(connection)
                let row = try connection.execute(
                    """
                    SELECT is_active, webhook_secret, webhook_subscription_id,
                           webhook_ensure_lease_until IS NOT NULL AND webhook_ensure_lease_until > now() AS leased
                    FROM firm_integrations
                    WHERE firm_id = app_current_firm() AND platform = 'smokeball'
                    FOR UPDATE
                    """
                ).first
                guard let row, try row.bool("is_active"), let key = try row.optionalBytes("webhook_secret") else {
                    throw Failure(code: .notConnected)
                }
                if try row.bool("leased") { return nil }
                try connection.execute(
                    """
                    UPDATE firm_integrations
                    SET webhook_ensure_lease_id = $1, webhook_ensure_lease_until = now() + make_interval(secs => $2)
                    WHERE firm_id = app_current_firm() AND platform = 'smokeball'
                    """, [lease, Double(leaseSeconds)])
                return (firmID, key, try row.optionalString("webhook_subscription_id"))
            }
            if let taken { return taken }
            guard Date() < deadline else { throw Failure(code: .busy) }
            Thread.sleep(forTimeInterval: pollInterval)
        }
    }

    /// Frees the lease after a failure, so the next ensure need not wait for it to run out.
    func releaseLease(_ lease: UUID, enter: (Connection) throws -> UUID) {
        _ = try? database.transaction { connection in
            _ = try enter(connection)
            try connection.execute(
                """
                UPDATE firm_integrations SET webhook_ensure_lease_id = NULL, webhook_ensure_lease_until = NULL
                WHERE firm_id = app_current_firm() AND platform = 'smokeball' AND webhook_ensure_lease_id = $1
                """, [lease])
        }
    }
}
