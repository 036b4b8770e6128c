import Basics
import Cryptography
import FastCGI
import Foundation
import HTTPClient
import PostgreSQL

/// Delivers recorded events (`sb_events`) to webhook subscriptions, as Smokeball does:
/// `POST {accountId, userId?, subscriptionId, type, source, payload, timestamp}` to the
/// subscription's URL with exactly the headers Smokeball documents — `Content-Type:
/// application/json; charset=utf-8`, `Timestamp`, `RequestId` and (when it has a key)
/// `Signature` — besides Host and Content-Length; no User-Agent (Smokeball's is not published,
/// and a made-up one would invite receivers to rely on it). A 10 second timeout, and retries
/// with exponential backoff. Any number of dispatcher processes may run:
/// fan-out is idempotent per event and attempts are claimed with `FOR UPDATE SKIP LOCKED`
/// plus a lease, so no attempt is sent by two processes at once.
///
/// `smokeball-sandbox deliver` runs `run(configuration:)`; tests and demos run single passes
/// (`deliverPending`, or `POST /_sandbox/webhooks/deliver`).
public enum WebhookDispatcher {
    /// Smokeball gives up on an answer after 10 seconds.
    static let timeout: TimeInterval = 10
    static let maxAttempts = 8
    static let batchSize = 20
    static let pollInterval: useconds_t = 200_000

    /// Delay before the attempt after `attempt` failed ones: 1 s, 2 s, 4 s, ... at most 5 minutes.
    static func backoff(afterAttempt attempt: Int) -> TimeInterval {
        min(300, pow(2, Double(max(0, attempt - 1))))
    }

    /// How long a claimed batch is reserved for the claiming process: every send may take the
    /// whole timeout (twice when duplicated), plus a margin. A process that dies mid-batch
    /// leaves its deliveries to be retried when the lease runs out.
    static func lease(for count: Int) -> TimeInterval { 30 + Double(count) * (2 * timeout + 1) }

    /// What one pass did.
    struct PassCounts: Equatable, Sendable {
        /// Subscriptions removed because their partner's grant lapsed.
        var purged = 0
        /// Events fanned out and the deliveries that made.
        var events = 0
        var created = 0
        /// Attempts made (a duplicated delivery is one attempt of two sends), and their outcomes.
        var attempted = 0
        var delivered = 0
        var retrying = 0
        var failed = 0
        var cancelled = 0

        var json: [String: Any] {
            [
                "purged": purged, "events": events, "created": created, "attempted": attempted,
                "delivered": delivered, "retrying": retrying, "failed": failed, "cancelled": cancelled,
            ]
        }
    }

    /// One pass: remove subscriptions whose grant lapsed, fan out new events, then send every
    /// delivery due at `now` (in batches until none is due). `now` is the sandbox clock; the
    /// `Timestamp` header is `now` plus the time the pass has taken so far.
    static func deliverPending(database: Database, now: Date, client: HTTPClient, log: Logger? = nil) throws
        -> PassCounts
    {
        let started = Date()
        var counts = PassCounts()
        // Due updates first: their events are recorded only when they are applied.
        try PendingUpdate.settle(database, account: nil, now: now)
        try database.withConnection { connection in
            counts.purged = try Webhooks.purgeLapsed(connection, now: now)
            counts.cancelled += try connection.execute(
                "UPDATE sb_webhook_deliveries SET status = 'cancelled' WHERE status = 'pending' AND subscription_id IS NULL"
            ).affectedRows
            while true {
                let (events, created) = try fanOut(connection, now: now)
                counts.events += events
                counts.created += created
                if events < 500 { break }
            }
        }
        // Each claimed delivery ends delivered, failed or due after `now`, so this ends.
        while true {
            let batch = try database.withConnection { try claim($0, now: now) }
            if batch.isEmpty { break }
            for delivery in order(batch) {
                let sentAt = now.addingTimeInterval(Date().timeIntervalSince(started))
                let outcome = try attempt(delivery, database: database, client: client, sentAt: sentAt, log: log)
                switch outcome {
                case .delivered: counts.delivered += 1
                case .retrying: counts.retrying += 1
                case .failed: counts.failed += 1
                case .cancelled: counts.cancelled += 1
                }
                if outcome != .cancelled { counts.attempted += 1 }
            }
        }
        return counts
    }

    /// Up to 500 events not yet fanned out, each to the subscriptions of its account that want
    /// its type, existed when it was recorded, and whose partner still holds the account's
    /// grant. An `error` event caused by a partner's request goes to that partner only. The
    /// fan-out marker's primary key makes this idempotent under concurrent dispatchers.
    static func fanOut(_ connection: Connection, now: Date) throws -> (events: Int, deliveries: Int) {
        let result = try connection.execute(
            """
            WITH marked AS (
                INSERT INTO sb_webhook_fanout (event_id)
                SELECT e.id FROM sb_events e
                WHERE NOT EXISTS (SELECT 1 FROM sb_webhook_fanout f WHERE f.event_id = e.id)
                ORDER BY e.id LIMIT 500
                ON CONFLICT (event_id) DO NOTHING
                RETURNING event_id
            ), created AS (
                INSERT INTO sb_webhook_deliveries
                    (event_id, subscription_id, account_id, client_id, event_type, url, request_id, next_attempt_at)
                SELECT e.id, s.id, e.account_id, s.client_id, e.type, s.url,
                       coalesce(nullif(e.request_id, ''), gen_random_uuid()::text), $1
                FROM marked m
                JOIN sb_events e ON e.id = m.event_id
                JOIN sb_webhook_subscriptions s ON s.account_id = e.account_id AND e.type = ANY (s.event_types)
                    AND s.registered_at <= e.created_at
                    AND (e.type <> 'error' OR e.client_id IS NULL OR e.client_id = s.client_id)
                WHERE EXISTS (
                    SELECT 1 FROM sb_tokens t
                    WHERE t.kind = 'refresh' AND t.client_id = s.client_id AND t.account_id = s.account_id
                    AND t.revoked_at IS NULL AND t.expires_at > $1)
                ORDER BY e.id, s.created_at, s.id
                RETURNING id
            )
            SELECT (SELECT count(*) FROM marked) AS events, (SELECT count(*) FROM created) AS deliveries
            """, [now]
        ).single()
        return (Int(try result.int("events")), Int(try result.int("deliveries")))
    }

    /// One claimed attempt of a delivery, with what is needed to send it.
    struct Claimed {
        let id: Int64
        let attempt: Int
        let requestID: String
        let clientID: String
        let accountID: UUID
        let subscriptionID: UUID?
        /// The firm user who triggered the event, when there is one.
        let userID: UUID?
        let eventType: String
        let source: String
        let payload: Any
        let eventAt: Date
        let url: String?
        let key: String?
        let duplicate: Bool
        let shuffle: Bool
        /// The shuffle knob's seed, when the partner set one (its shuffles replay).
        var shuffleSeed: UInt64? = nil
    }

    /// Claims the due deliveries (oldest first) by counting the attempt and moving
    /// `next_attempt_at` to the end of a lease, in one statement; rows another process holds
    /// are skipped.
    static func claim(_ connection: Connection, now: Date) throws -> [Claimed] {
        let rows = try connection.execute(
            """
            WITH due AS (
                SELECT d.id FROM sb_webhook_deliveries d
                WHERE d.status = 'pending' AND d.next_attempt_at <= $1
                ORDER BY d.next_attempt_at, d.id LIMIT $2
                FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE sb_webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = $3
                FROM due WHERE d.id = due.id
                RETURNING d.id, d.attempts, d.request_id, d.client_id, d.account_id, d.subscription_id, d.event_id
            )
            SELECT c.id, c.attempts, c.request_id, c.client_id, c.account_id, c.subscription_id, e.type, e.source,
                   e.user_id,
                   e.payload, e.created_at AS event_at, s.url, s.key,
                   coalesce(k.duplicate, false) AS duplicate, coalesce(k.shuffle, false) AS shuffle, k.shuffle_seed
            FROM claimed c
            JOIN sb_events e ON e.id = c.event_id
            LEFT JOIN sb_webhook_subscriptions s ON s.id = c.subscription_id
            LEFT JOIN sb_webhook_knobs k ON k.client_id = c.client_id
            ORDER BY c.id
            """, [now, batchSize, now.addingTimeInterval(lease(for: batchSize))]
        ).rows
        return try rows.map { row in
            Claimed(
                id: try row.int("id"), attempt: Int(try row.int("attempts")), requestID: try row.string("request_id"),
                clientID: try row.string("client_id"), accountID: try row.uuid("account_id"),
                subscriptionID: try row.optionalUUID("subscription_id"), userID: try row.optionalUUID("user_id"),
                eventType: try row.string("type"),
                source: try row.string("source"), payload: try row.json("payload"), eventAt: try row.date("event_at"),
                url: try row.optionalString("url"), key: try row.optionalString("key"),
                duplicate: try row.bool("duplicate"), shuffle: try row.bool("shuffle"),
                shuffleSeed: try row.optionalInt("shuffle_seed").map { UInt64(bitPattern: $0) })
        }
    }

    /// The batch in sending order: as claimed, except that the deliveries of partners with the
    /// shuffle knob trade places among themselves at random. When the first of them has a seed,
    /// the seed and that delivery's id draw the order, so the same deliveries claimed again (a
    /// test replayed on a fresh sandbox) go out in the same order (sandbox migration 018).
    static func order(_ batch: [Claimed]) -> [Claimed] {
        var result = batch
        let slots = batch.indices.filter { batch[$0].shuffle }
        guard let first = slots.first else { return batch }
        let moving = slots.map { batch[$0] }
        let shuffled: [Claimed]
        if let seed = batch[first].shuffleSeed {
            var generator = SeededGenerator(seed: seed ^ UInt64(bitPattern: batch[first].id))
            shuffled = moving.shuffled(using: &generator)
        } else {
            shuffled = moving.shuffled()
        }
        for (slot, delivery) in zip(slots, shuffled) { result[slot] = delivery }
        return result
    }

    enum Outcome: Equatable { case delivered, retrying, failed, cancelled }

    /// The notification body Smokeball posts (its published sample): `userId` only when a user
    /// triggered the event, and `timestamp` the event's .NET ticks as a JSON integer (an Int64,
    /// written exactly: as a double it would lose its last digits).
    static func body(_ delivery: Claimed, subscriptionID: UUID) throws -> [UInt8] {
        var body: [String: Any] = [
            "accountId": delivery.accountID.uuidString.lowercased(),
            "subscriptionId": subscriptionID.uuidString.lowercased(), "type": delivery.eventType,
            "source": delivery.source, "payload": delivery.payload,
            "timestamp": DotNetTicks.from(delivery.eventAt),
        ]
        if let user = delivery.userID { body["userId"] = user.uuidString.lowercased() }
        return try JSONWriter.encode(body)
    }

    /// The headers of a delivery, exactly as Smokeball names them.
    static func headers(timestamp: String, requestID: String, signature: String?) -> [(String, String)] {
        var headers = [
            ("Content-Type", "application/json; charset=utf-8"), ("Timestamp", timestamp), ("RequestId", requestID),
        ]
        if let signature { headers.append(("Signature", signature)) }
        return headers
    }

    /// `Signature`: lowercase hex HMAC-SHA256(key, Timestamp|RequestId|ClientId).
    static func signature(key: String, timestamp: String, requestID: String, clientID: String) -> String {
        Hex.encode(HMACSHA256.authenticate(Array("\(timestamp)|\(requestID)|\(clientID)".utf8), key: Array(key.utf8)))
    }

    static func attempt(_ delivery: Claimed, database: Database, client: HTTPClient, sentAt: Date, log: Logger?)
        throws -> Outcome
    {
        guard let subscriptionID = delivery.subscriptionID, let url = delivery.url else {
            // The subscription went away after fan-out (deleted, or the grant lapsed).
            _ = try database.withConnection {
                try $0.execute(
                    "UPDATE sb_webhook_deliveries SET status = 'cancelled' WHERE id = $1 AND status = 'pending'",
                    [delivery.id])
            }
            log?.info("webhook_cancelled", ["delivery_id": delivery.id, "event_type": delivery.eventType])
            return .cancelled
        }
        let timestamp = String(DotNetTicks.from(sentAt))
        let headers = Self.headers(
            timestamp: timestamp, requestID: delivery.requestID,
            signature: delivery.key.map {
                signature(key: $0, timestamp: timestamp, requestID: delivery.requestID, clientID: delivery.clientID)
            })
        let request = HTTPRequest(
            method: "POST", url: url, headers: headers, body: try body(delivery, subscriptionID: subscriptionID),
            timeout: timeout)
        var sends: [(status: Int?, error: String?, milliseconds: Int)] = []
        for _ in 0..<(delivery.duplicate ? 2 : 1) {
            let clock = Date()
            do {
                let response = try client.send(request)
                sends.append((response.status, nil, Int(Date().timeIntervalSince(clock) * 1000)))
            } catch {
                sends.append((nil, error.description, Int(Date().timeIntervalSince(clock) * 1000)))
            }
        }
        let succeeded = sends.contains { ($0.status ?? 0) / 100 == 2 }
        let last = sends[sends.count - 1]
        let outcome: Outcome = succeeded ? .delivered : delivery.attempt >= maxAttempts ? .failed : .retrying
        let status: String =
            switch outcome {
            case .delivered: "delivered"
            case .failed: "failed"
            default: "pending"
            }
        let next = sentAt.addingTimeInterval(backoff(afterAttempt: delivery.attempt))
        try database.transaction { connection in
            for send in sends {
                try connection.execute(
                    """
                    INSERT INTO sb_webhook_attempts (delivery_id, attempt, status, error, duration_ms, at)
                    VALUES ($1, $2, $3, $4, $5, $6)
                    """, [delivery.id, delivery.attempt, send.status, send.error, send.milliseconds, sentAt])
            }
            try connection.execute(
                """
                UPDATE sb_webhook_deliveries SET status = $2, last_status = $3, last_error = $4,
                    delivered_at = CASE WHEN $2 = 'delivered' THEN $5 ELSE delivered_at END,
                    next_attempt_at = CASE WHEN $2 = 'pending' THEN $6 ELSE next_attempt_at END
                WHERE id = $1
                """, [delivery.id, status, last.status, last.error, sentAt, next])
        }
        // No payloads, URLs or keys in the log: they may carry personal data or secrets.
        var fields: [String: any Sendable] = [
            "delivery_id": delivery.id, "event_type": delivery.eventType, "client_id": delivery.clientID,
            "attempt": delivery.attempt, "outcome": status, "sends": sends.count, "duration_ms": last.milliseconds,
        ]
        if let code = last.status { fields["status"] = code }
        if let error = last.error { fields["error"] = error }
        log?.info("webhook_attempt", fields)
        return outcome
    }

    /// `smokeball-sandbox deliver`: passes until SIGTERM or SIGINT, pausing ~200 ms whenever
    /// nothing was due. Logs JSON lines on stderr (no payloads).
    ///
    /// A stop ends it between passes (a pass in flight finishes its deliveries), exit status 0.
    /// The signals are handled explicitly rather than left to their default action: a process
    /// inherits its parent's blocked signals (a test process, or any runtime that blocks SIGTERM
    /// in the thread that spawns), and with SIGTERM blocked the default action never happens.
    /// `StopSignals` blocks them itself and unblocks them only while waiting, so a stop is seen
    /// whatever mask the process started with.
    public static func run(configuration: SandboxConfiguration) -> Never {
        let log = Logger(route: "smokeball-sandbox-deliver")
        let database = Database(
            url: configuration.databaseURL, applicationName: "smokeball-sandbox-deliver", options: .direct)
        let client: HTTPClient
        do {
            client = try HTTPClient()
        } catch {
            log.error("webhook_dispatcher_http_client_failed", ["error": error.description])
            exit(1)
        }
        guard StopSignals.install() else {
            log.error("webhook_dispatcher_signals_failed", ["errno": Int(errno)])
            exit(1)
        }
        log.info("webhook_dispatcher_started", ["batch_size": batchSize, "max_attempts": maxAttempts])
        var failing = false
        while !StopSignals.checkPending() {
            do {
                let counts = try deliverPending(database: database, now: Date(), client: client, log: log)
                if failing {
                    log.info("webhook_dispatcher_recovered")
                    failing = false
                }
                if counts.events > 0 || counts.purged > 0 {
                    log.info(
                        "webhook_pass",
                        ["events": counts.events, "deliveries_created": counts.created, "purged": counts.purged])
                }
                if counts.attempted == 0 { pause(seconds: Double(pollInterval) / 1_000_000) }
            } catch {
                // Database down or not migrated yet: say so once per outage, keep trying.
                if !failing { log.error("webhook_pass_failed", ["error": String(describing: error)]) }
                failing = true
                pause(seconds: 1)
            }
        }
        log.info("webhook_dispatcher_stopped")
        exit(0)
    }

    /// Sleeps, or returns at once when a stop signal arrives.
    private static func pause(seconds: TimeInterval) {
        _ = try? StopSignals.wait(readable: -1, timeout: seconds)
    }
}
