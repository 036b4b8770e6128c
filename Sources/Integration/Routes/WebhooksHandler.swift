import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import Smokeball

/// `POST /api/v1/integrations/smokeball/webhooks`: Smokeball's webhook deliveries.
///
/// No user calls this: the caller is proven by the `Signature` header, HMAC-SHA256 under the
/// connection's webhook key of `Timestamp|RequestId|ClientId` (FACTS.md). The body is not signed,
/// so it is stored only as a hint: processing (the worker claims the stored event, which is its
/// own work item) re-reads the resource from Smokeball. This route never calls
/// Smokeball, so it answers within Smokeball's 10 seconds whatever Smokeball's own state.
///
/// A delivery is identified by its signed values, `RequestId` and `Timestamp`: the same headers
/// again (a duplicate send, or a captured signature replayed with another body) are one event.
/// A retry of a delivery (same `RequestId`, new `Timestamp`) is recognised by its request id,
/// type, subscription, event timestamp and resource.
public struct WebhooksHandler: DatabaseHandler {
    public let route = "webhooks"
    public let database: Database
    let vault: TokenVault
    /// Our OAuth client id, the last part of what Smokeball signs; nil when Smokeball is not
    /// configured (every delivery then answers 503: nothing could check it).
    let clientID: String?
    /// The clock the `Timestamp` header is checked against (tests move it).
    let now: @Sendable () -> Date
    /// This process's copy of connections' keys (each worker process has its own).
    let keyCache = WebhookKeyCache()

    /// Smokeball gives no replay window (FACTS.md); five minutes each way.
    public static let timestampTolerance: Int64 = 5 * 60 * 10_000_000
    /// Deliveries are small JSON envelopes; nginx refuses larger bodies first.
    public static let maxBodyBytes = 256 * 1024

    public init(
        database: Database, vault: TokenVault, clientID: String?, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.database = database
        self.vault = vault
        self.clientID = clientID
        self.now = now
    }

    public init(configuration: Configuration) throws {
        self.init(
            database: Database(
                url: configuration.databaseURL, applicationName: "casehug-webhooks",
                options: configuration.databaseOptions),
            vault: try TokenVault(configuration: configuration),
            clientID: try SmokeballConfiguration.fromEnvironment().credentials?.clientID)
    }

    /// Why a delivery's signature was refused: what the log says (the answer is one 401 for all).
    enum Rejection: String, Error {
        case signatureMissing = "signature_missing"
        case signatureMismatch = "signature_mismatch"
        case timestampSkew = "timestamp_skew"
    }

    static let unauthorized = HTTPError(
        .unauthorized, code: "invalid_signature", "The delivery's signature is not valid")

    /// The connection's keys changed under three attempts in a row: Smokeball retries later.
    static let connectionChanging = HTTPError(
        .serviceUnavailable, code: "connection_changing", "The connection is changing; retry later")

    /// The connection's firm and keys, found by account before any tenant is set (migration 035).
    static let connectionSQL = "SELECT firm_id, webhook_secret, previous_webhook_secret FROM app_webhook_connection($1)"

    public func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        guard request.method == "POST" else { throw HTTPError.methodNotAllowed(allowed: ["POST"]) }
        guard request.body.count <= Self.maxBodyBytes else {
            throw HTTPError(
                .payloadTooLarge, code: "payload_too_large", "Request body exceeds \(Self.maxBodyBytes) bytes")
        }
        let envelope = try WebhookEnvelope(try request.jsonObject(), json: try WebhookEnvelope.text(request.body))
        guard let clientID else { throw ConnectHandler.notConfigured }
        let signed = SignedHeaders(request)
        // One round trip when this process holds the connection's keys from an earlier delivery
        // (`WebhookKeyCache`): the statement that stores the event first confirms that the key
        // that matched is still the connection's. Otherwise two: the keys are read first
        // (docs/inbound.md, "Benchmarks").
        var cached = keyCache.entry(for: envelope.accountID)
        var outcome: Outcome?
        for _ in 0..<3 where outcome == nil {
            let connection: WebhookKeyCache.Entry
            let fresh = cached == nil
            if let entry = cached {
                connection = entry
                cached = nil
            } else {
                guard
                    let row = try database.pipelinedRead([Statement(Self.connectionSQL, [envelope.accountID])])[0]
                        .first
                else {
                    try recordIgnored(envelope)
                    outcome = .ignored
                    break
                }
                let firmID = try row.uuid("firm_id")
                connection = WebhookKeyCache.Entry(
                    firmID: firmID, keys: try keys(row, firmID: firmID, log: context.log))
            }
            let delivery: SignedHeaders.Verified
            switch signed.verify(now: now(), clientID: clientID, keys: connection.keys.map(\.key)) {
            case .success(let verified): delivery = verified
            case .failure where !fresh:
                continue  // The keys this process held may be old: read them.
            case .failure(let rejection):
                context.log.warning(
                    "webhook_rejected",
                    [
                        "reason": rejection.rawValue, "firm_id": connection.firmID.uuidString.lowercased(),
                        "event_type": envelope.type,
                    ])
                recordRefused(rejection, log: context.log)
                throw Self.unauthorized
            }
            let sealedKey = connection.keys[delivery.keyIndex].sealed
            // Stored and committed (one statement: an implicit transaction, no BEGIN and COMMIT
            // to send and run), then the waiting workers woken, in one round trip.
            let results = try database.pipelinedAutocommit(
                [Self.record(envelope, delivery, sealedKey: sealedKey)],
                after: [JobQueue.wakeWebhookEventWorkersStatement])
            guard let stored = results[0].first, try stored.uuid("firm_id") == connection.firmID else {
                // Disconnected (or reconnected by another firm) meanwhile: the insert required
                // this firm, so nothing was stored.
                keyCache.forget(envelope.accountID)
                try recordIgnored(envelope)
                outcome = .ignored
                break
            }
            guard try stored.bool("key_current") else {
                // The key changed since it was read (a reconnect, keys sealed anew): nothing was
                // stored; read the connection again.
                keyCache.forget(envelope.accountID)
                continue
            }
            if fresh { keyCache.remember(envelope.accountID, connection) }
            let firm = connection.firmID.uuidString.lowercased()
            if let eventID = try stored.optionalUUID("event_id") {
                outcome = .recorded(firm, eventID)
            } else {
                outcome = .duplicate(firm)
            }
        }
        guard let outcome else { throw Self.connectionChanging }
        // The outcome goes on the request's own log line (with its request id).
        var response = Response(
            headers: [("Content-Type", "application/json")], body: Array(#"{"status":"\#(outcome.status)"}"#.utf8))
        response.logFields = ["webhook": outcome.status, "event_type": envelope.type]
        switch outcome {
        case .ignored:
            response.logFields["account_id"] = envelope.accountID
        case .duplicate(let firm):
            response.logFields["firm_id"] = firm
        case .recorded(let firm, let eventID):
            response.logFields["firm_id"] = firm
            response.logFields["event_id"] = eventID.uuidString.lowercased()
        }
        return response
    }

    enum Outcome {
        case ignored
        case duplicate(String)
        case recorded(String, UUID)

        var status: String {
            switch self {
            case .ignored: "ignored"
            case .duplicate: "duplicate"
            case .recorded: "accepted"
            }
        }
    }

    /// The keys a delivery may be signed with, each with its sealed form: the current one, and
    /// the one before the last reconnect while its grace period lasts (the database returns it
    /// only then). A key that does not open is not a key: logged, and deliveries signed with it fail.
    func keys(_ row: Row, firmID: UUID, log: Logger) throws -> [WebhookKeyCache.Key] {
        var keys: [WebhookKeyCache.Key] = []
        for (name, column) in [
            ("webhook_secret", TokenVault.Column.webhookSecret),
            ("previous_webhook_secret", TokenVault.Column.previousWebhookSecret),
        ] {
            guard let sealed = try row.optionalBytes(name) else { continue }
            guard let key = try? vault.open(sealed, firmID: firmID, platform: "smokeball", column: column) else {
                log.error(
                    "webhook_key_unreadable", ["firm_id": firmID.uuidString.lowercased(), "column": name])
                continue
            }
            keys.append(WebhookKeyCache.Key(sealed: sealed, key: Array(key.utf8)))
        }
        return keys
    }

    /// A delivery for an account no firm has connected: counted (`app_record_ignored_webhook`).
    func recordIgnored(_ envelope: WebhookEnvelope) throws {
        _ = try database.pipelinedTransaction([
            Statement("SELECT app_record_ignored_webhook($1, $2)", [envelope.accountID, envelope.type])
        ])
    }

    /// A refused delivery, counted by reason for `casehug-admin metrics` (migration 043; only this
    /// path writes it, never the accept path). Not counting it does not change the answer.
    func recordRefused(_ rejection: Rejection, log: Logger) {
        do {
            _ = try database.pipelinedTransaction([
                Statement("SELECT app_record_refused_webhook($1)", [rejection.rawValue])
            ])
        } catch {
            log.warning("webhook_refusal_not_counted", ["error": "\(error)"])
        }
    }

    /// Stores the delivery (migration 046, `app_webhook_record`): binds the firm of
    /// the envelope's account only while `sealedKey`, the sealed key the signature matched, is still one of
    /// the connection's, and then inserts the event unless it is a duplicate. One row
    /// (`firm_id`, `key_current`, `event_id`: null for a duplicate or a key no longer current);
    /// none when no firm has the account connected. The stored event is its own work item
    /// (migration 045: the worker claims unprocessed events), so nothing else is written. The
    /// unique dedupe key settles concurrent duplicates (one insert wins, the others do nothing).
    static func record(
        _ envelope: WebhookEnvelope, _ delivery: SignedHeaders.Verified, sealedKey: [UInt8]
    ) -> Statement {
        Statement(
            "SELECT firm_id, key_current, event_id FROM app_webhook_record($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            [
                envelope.accountID, sealedKey, envelope.type, envelope.resourceType, envelope.resourceID,
                SQLValue.json(envelope.json), envelope.subscriptionID, delivery.requestID, envelope.timestamp,
                delivery.dedupeKey,
            ])
    }
}

/// The delivery headers Smokeball signs.
struct SignedHeaders {
    let signature: String?
    let timestamp: String?
    let requestID: String?

    init(signature: String?, timestamp: String?, requestID: String?) {
        self.signature = signature
        self.timestamp = timestamp
        self.requestID = requestID
    }

    init(_ request: Request) {
        self.init(
            signature: request.header("Signature"), timestamp: request.header("Timestamp"),
            requestID: request.header("RequestId"))
    }

    /// A delivery whose signature checked out.
    struct Verified {
        let requestID: String
        let ticks: Int64
        /// Which of the keys it was signed with.
        var keyIndex = 0
        /// Only signed values: another body under the same headers is the same delivery.
        var dedupeKey: String { "\(requestID)|\(ticks)" }
    }

    /// `Signature` must be the lowercase hex HMAC-SHA256 of `Timestamp|RequestId|ClientId` under
    /// one of `keys`, and `Timestamp` (.NET ticks) within the tolerance of `now`, edges included.
    func verify(now: Date, clientID: String, keys: [[UInt8]]) -> Result<Verified, WebhooksHandler.Rejection> {
        guard let signature, !signature.isEmpty, let timestamp, let requestID, !requestID.isEmpty,
            requestID.utf8.count <= 200
        else { return .failure(.signatureMissing) }
        guard timestamp.utf8.count <= 19, timestamp.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let ticks = Int64(timestamp)
        else { return .failure(.signatureMismatch) }
        let message = Array("\(timestamp)|\(requestID)|\(clientID)".utf8)
        let presented = Array(signature.utf8)
        // Every key is tried, so the time taken does not say which one matched.
        var matched: Int?
        for (index, key) in keys.enumerated() {
            let expected = Array(Hex.encode(HMACSHA256.authenticate(message, key: key)).utf8)
            if ConstantTime.equals(expected, presented) { matched = index }
        }
        guard let matched else { return .failure(.signatureMismatch) }
        // After the signature: a skew is then Smokeball's clock (or an old capture), worth telling apart.
        let (difference, overflow) = DotNetTicks.from(now).subtractingReportingOverflow(ticks)
        guard !overflow, difference.magnitude <= UInt64(WebhooksHandler.timestampTolerance) else {
            return .failure(.timestampSkew)
        }
        return .success(Verified(requestID: requestID, ticks: ticks, keyIndex: matched))
    }
}

/// Smokeball's notification body: `{accountId, userId?, subscriptionId, type, source, payload,
/// timestamp}` (FACTS.md). Every listed field is required; a body without one is refused.
struct WebhookEnvelope {
    let accountID: String
    let subscriptionID: String
    let type: String
    let source: String
    /// The whole body, as received: the database stores its `payload` member (`record`), which
    /// spares serialising the parsed payload again.
    let json: String
    /// The event's .NET ticks (not the send time of the `Timestamp` header).
    let timestamp: Int64
    /// What the event names, when the payload says: `matter` of `matter.updated`, or an `error`
    /// event's `resourceName`; the payload's `id` (an `error` event's `resourceId`).
    let resourceType: String?
    let resourceID: String?

    static func invalid(_ message: String) -> HTTPError {
        HTTPError(.badRequest, code: "invalid_webhook", message)
    }

    /// The body as the database reads it (`json`): UTF-8 without a byte-order mark or NUL.
    /// JSONSerialization also reads UTF-16 and UTF-32 and skips a mark; PostgreSQL does neither.
    static func text(_ body: [UInt8]) throws(HTTPError) -> String {
        var bytes = body[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        guard !bytes.contains(0), let text = String(validating: bytes, as: UTF8.self) else {
            throw HTTPError(.badRequest, code: "invalid_json", "Request body must be JSON in UTF-8")
        }
        // jsonb cannot hold a NUL either: the insert would fail as our error (500), not the sender's.
        guard !holdsNULEscape(bytes) else {
            throw HTTPError(
                .badRequest, code: "invalid_value", "The request holds a value that cannot be stored (a NUL character)")
        }
        return text
    }

    /// Whether JSON text (already parsed, so a backslash is always an escape) holds `\u0000`.
    /// Each backslash escapes the byte after it, so `\\u0000` (a backslash, then text) is not one.
    static func holdsNULEscape(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.withUnsafeBufferPointer { buffer in
            var index = 0
            while index + 5 < buffer.count {
                guard buffer[index] == UInt8(ascii: "\\") else {
                    index += 1
                    continue
                }
                if buffer[index + 1] == UInt8(ascii: "u"), buffer[index + 2] == UInt8(ascii: "0"),
                    buffer[index + 3] == UInt8(ascii: "0"), buffer[index + 4] == UInt8(ascii: "0"),
                    buffer[index + 5] == UInt8(ascii: "0")
                {
                    return true
                }
                index += 2
            }
            return false
        }
    }

    init(_ body: [String: Any], json: String) throws(HTTPError) {
        self.json = json
        func text(_ name: String) throws(HTTPError) -> String {
            guard let value = body[name] as? String, !value.isEmpty, value.utf8.count <= 200 else {
                throw Self.invalid("\(name) must be a non-empty string")
            }
            return value
        }
        accountID = try text("accountId")
        subscriptionID = try text("subscriptionId")
        type = try text("type")
        source = try text("source")
        guard let raw = body["timestamp"], JSONBoolean.value(raw) == nil, let ticks = raw as? Int64, ticks > 0 else {
            throw Self.invalid("timestamp must be .NET ticks")
        }
        timestamp = ticks
        guard let payload = body["payload"] as? [String: Any] else { throw Self.invalid("payload must be an object") }
        if type == "error" {
            resourceType = payload["resourceName"] as? String
            resourceID = payload["resourceId"] as? String
        } else {
            resourceType = type.split(separator: ".", maxSplits: 1).first.map(String.init)
            resourceID = payload["id"] as? String
        }
    }
}
