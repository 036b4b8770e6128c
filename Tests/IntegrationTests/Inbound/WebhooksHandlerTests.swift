import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// A CaseHug database with one firm connected to a Smokeball account, and the webhooks handler
/// called without sockets, on a clock the test chooses.
struct WebhookFixture {
    /// FACTS.md's check values: key, client id, and the account of the published sample body.
    static let factsKey = "ei7641529ue420n8b9aa"
    static let factsClientID = "lou1qnn0llav95f"
    static let factsAccountID = "1e53979d-9269-4159-b104-2e603670f59d"
    static let vaultKey = SecureRandom.bytes(32)

    let database: ServiceDatabase
    let seed: Seed
    let firm: UUID
    let vault: TokenVault
    let app: Database
    let key = factsKey
    let accountID = factsAccountID

    static func with(_ body: (WebhookFixture) throws -> Void) throws {
        try ServiceDatabase.with { database in
            let fixture = try WebhookFixture(database)
            try fixture.connect(fixture.firm, account: fixture.accountID, key: fixture.key)
            try body(fixture)
        }
    }

    init(_ database: ServiceDatabase) throws {
        self.database = database
        seed = try Seed(database)
        firm = try seed.firm("Webhook Firm")
        vault = try TokenVault(key: Self.vaultKey)
        app = Database(url: database.appURL)
    }

    /// The firm's connection as the callback stores it, with `previous` as the key before a
    /// reconnect `rotatedSecondsAgo` seconds ago.
    func connect(
        _ firm: UUID, account: String, key: String, previous: String? = nil, rotatedSecondsAgo: Int = 0,
        active: Bool = true
    ) throws {
        let sealed = try vault.seal(key, firmID: firm, platform: "smokeball", column: .webhookSecret)
        let sealedPrevious = try previous.map {
            try vault.seal($0, firmID: firm, platform: "smokeball", column: .previousWebhookSecret)
        }
        try seed.asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO firm_integrations (
                    firm_id, platform, access_token, refresh_token, is_active, webhook_secret, smokeball_account_id,
                    previous_webhook_secret, webhook_secret_rotated_at)
                VALUES ($1, 'smokeball', '\\x01'::bytea, '\\x02'::bytea, $2, $3, $4, $5,
                    CASE WHEN $5::bytea IS NOT NULL THEN now() - make_interval(secs => $6) END)
                ON CONFLICT (firm_id, platform) DO UPDATE SET is_active = EXCLUDED.is_active,
                    webhook_secret = EXCLUDED.webhook_secret, smokeball_account_id = EXCLUDED.smokeball_account_id,
                    previous_webhook_secret = EXCLUDED.previous_webhook_secret,
                    webhook_secret_rotated_at = EXCLUDED.webhook_secret_rotated_at
                """, [firm, active, sealed, account, sealedPrevious, rotatedSecondsAgo])
        }
    }

    func handler(now: Date = Date(), clientID: String? = factsClientID) -> WebhooksHandler {
        WebhooksHandler(database: app, vault: vault, clientID: clientID, now: { now })
    }

    static func signature(key: String, timestamp: String, requestID: String, clientID: String = factsClientID)
        -> String
    {
        Hex.encode(HMACSHA256.authenticate(Array("\(timestamp)|\(requestID)|\(clientID)".utf8), key: Array(key.utf8)))
    }

    /// The headers of a delivery signed with `key` (the fixture's by default).
    func headers(ticks: Int64, requestID: String = UUID().uuidString.lowercased(), key: String? = nil) -> [String:
        String]
    {
        let timestamp = String(ticks)
        return [
            "content-type": "application/json; charset=utf-8", "timestamp": timestamp, "requestid": requestID,
            "signature": Self.signature(key: key ?? self.key, timestamp: timestamp, requestID: requestID),
        ]
    }

    /// Smokeball's published sample body (FACTS.md), for `account`, with `type` and payload `id`.
    static func body(
        account: String = factsAccountID, type: String = "matter.updated",
        resourceID: String = "68df1d38-b9a3-4855-b32f-6af1aae2f258", eventTicks: Int64 = 637_981_232_724_209_300
    ) -> String {
        """
        {"accountId": "\(account)", "userId": "526670af-acd8-401e-bc64-6d4cafb4a12a",
         "subscriptionId": "6543c46b-d1d5-4a00-8732-36a63a20c3b4", "type": "\(type)", "source": "API",
         "payload": {"id": "\(resourceID)", "externalSystemId": null, "number": "10001",
           "title": "John Smith | Sale",
           "matterType": {"id": "602b31b2-da47-4b17-9ff5-f84f3f3efeec", "rel": "MatterTypes"},
           "clients": [{"id": "6aeee3fb-7587-4b33-8570-9d34dbde5d8f", "rel": "Contacts"}],
           "description": "Sale of Franchise", "status": "Open"},
         "timestamp": \(eventTicks)}
        """
    }

    func deliver(
        _ body: String = WebhookFixture.body(), headers: [String: String], method: String = "POST",
        handler: WebhooksHandler? = nil
    ) -> Response {
        deliver(bytes: Array(body.utf8), headers: headers, method: method, handler: handler)
    }

    func deliver(bytes: [UInt8], headers: [String: String], method: String = "POST", handler: WebhooksHandler? = nil)
        -> Response
    {
        let request = Request(
            method: method, path: "/api/v1/integrations/smokeball/webhooks", headers: headers, body: bytes,
            requestID: "test-request")
        return respond(to: request, with: handler ?? self.handler(), log: Logger(route: "webhooks")).0
    }

    /// Every stored event, as the superuser sees it.
    func events() throws -> [Row] {
        try seed.connection.execute(
            """
            SELECT id, firm_id, event_type, resource_type, resource_id, payload::text AS payload, subscription_id,
                smokeball_request_id, event_timestamp_ticks, dedupe_key, processed
            FROM smokeball_webhook_events ORDER BY created_at
            """
        ).rows
    }

    /// The work waiting for the worker: stored events not processed yet (migration 045: an event
    /// is its own work item; the route writes no job).
    func jobs() throws -> [Row] {
        try seed.connection.execute(
            """
            SELECT id, firm_id, attempts, run_after <= now() AS due FROM smokeball_webhook_events
            WHERE NOT processed AND lease_id IS NULL ORDER BY created_at
            """
        ).rows
    }

    /// Rows of `jobs` of any kind (the route writes none).
    func jobRows() throws -> Int64 {
        try seed.connection.execute("SELECT count(*)::int8 AS n FROM jobs").single().int("n")
    }

    func ignored() throws -> [String: Int64] {
        var counts: [String: Int64] = [:]
        for row in try seed.connection.execute("SELECT account_id, deliveries FROM smokeball_ignored_webhooks").rows {
            counts[try row.string("account_id")] = try row.int("deliveries")
        }
        return counts
    }

    static func status(_ response: Response) -> String? {
        (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["status"] as? String
    }

    static func errorCode(_ response: Response) -> String? {
        ((try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["error"]
            as? [String: Any])?["code"] as? String
    }
}

@Suite struct WebhooksHandlerTests {
    static let factsTimestamp: Int64 = 638_609_288_928_990_639
    static let factsRequestID = "e56f2c3f-b6de-4310-a7a2-c139d62f9711"
    static let factsSignature = "58817681863148b0e624c00f3094f99e1af31cd7b99a3c2e0655d64a2764d650"

    @Test("FACTS.md's check values verify, and a delivery signed with them is stored with its processing job")
    func factsCheckValues() throws {
        let verified = SignedHeaders(
            signature: Self.factsSignature, timestamp: String(Self.factsTimestamp), requestID: Self.factsRequestID
        ).verify(
            now: DotNetTicks.date(Self.factsTimestamp), clientID: WebhookFixture.factsClientID,
            keys: [Array(WebhookFixture.factsKey.utf8)])
        #expect((try? verified.get())?.requestID == Self.factsRequestID)
        // One character off in the client id (what the signature covers) fails.
        let other = SignedHeaders(
            signature: Self.factsSignature, timestamp: String(Self.factsTimestamp), requestID: Self.factsRequestID
        ).verify(
            now: DotNetTicks.date(Self.factsTimestamp), clientID: "lou1qnn0llav95g",
            keys: [Array(WebhookFixture.factsKey.utf8)])
        #expect(throws: WebhooksHandler.Rejection.signatureMismatch) { try other.get() }

        try WebhookFixture.with { (fixture) throws in
            let response = fixture.deliver(
                headers: [
                    "content-type": "application/json; charset=utf-8", "timestamp": String(Self.factsTimestamp),
                    "requestid": Self.factsRequestID, "signature": Self.factsSignature,
                ], handler: fixture.handler(now: DotNetTicks.date(Self.factsTimestamp)))
            #expect(response.status.code == 200)
            #expect(WebhookFixture.status(response) == "accepted")
            let events = try fixture.events()
            try #require(events.count == 1)
            let event = events[0]
            #expect(try event.uuid("firm_id") == fixture.firm)
            #expect(try event.string("event_type") == "matter.updated")
            #expect(try event.optionalString("resource_type") == "matter")
            #expect(try event.optionalString("resource_id") == "68df1d38-b9a3-4855-b32f-6af1aae2f258")
            #expect(try event.optionalString("subscription_id") == "6543c46b-d1d5-4a00-8732-36a63a20c3b4")
            #expect(try event.optionalString("smokeball_request_id") == Self.factsRequestID)
            #expect(try event.int("event_timestamp_ticks") == 637_981_232_724_209_300)
            #expect(try event.string("payload").contains("\"title\": \"John Smith | Sale\""))
            // The stored event is the work item: pending, due now, no attempt yet, and no job row.
            let jobs = try fixture.jobs()
            try #require(jobs.count == 1)
            #expect(try jobs[0].uuid("id") == event.uuid("id"))
            #expect(try jobs[0].uuid("firm_id") == fixture.firm)
            #expect(try jobs[0].int("attempts") == 0)
            #expect(try jobs[0].bool("due"))
            #expect(try fixture.jobRows() == 0)
        }
    }

    @Test("Timestamp exactly five minutes either way is accepted, one tick beyond is 401 and stores nothing")
    func timestampEdges() throws {
        try WebhookFixture.with { (fixture) throws in
            let now = Date()
            let nowTicks = DotNetTicks.from(now)
            let handler = fixture.handler(now: now)
            let tolerance = WebhooksHandler.timestampTolerance
            for ticks in [nowTicks - tolerance, nowTicks + tolerance] {
                #expect(fixture.deliver(headers: fixture.headers(ticks: ticks), handler: handler).status.code == 200)
            }
            for ticks in [nowTicks - tolerance - 1, nowTicks + tolerance + 1] {
                let response = fixture.deliver(headers: fixture.headers(ticks: ticks), handler: handler)
                #expect(response.status.code == 401)
                #expect(WebhookFixture.errorCode(response) == "invalid_signature")
            }
            #expect(try fixture.events().count == 2)
            let late = SignedHeaders(
                signature: WebhookFixture.signature(
                    key: fixture.key, timestamp: String(nowTicks + tolerance + 1), requestID: "r"),
                timestamp: String(nowTicks + tolerance + 1), requestID: "r"
            ).verify(now: now, clientID: WebhookFixture.factsClientID, keys: [Array(fixture.key.utf8)])
            #expect(throws: WebhooksHandler.Rejection.timestampSkew) { try late.get() }
        }
    }

    @Test("A missing or wrong signature, timestamp or request id is 401 and stores nothing")
    func badSignatures() throws {
        try WebhookFixture.with { (fixture) throws in
            let ticks = DotNetTicks.from(Date())
            let good = fixture.headers(ticks: ticks)
            var cases: [([String: String], WebhooksHandler.Rejection)] = []
            for name in ["signature", "timestamp", "requestid"] {
                var headers = good
                headers[name] = nil
                cases.append((headers, .signatureMissing))
            }
            var wrongKey = fixture.headers(ticks: ticks, key: "another-key")
            cases.append((wrongKey, .signatureMismatch))
            wrongKey = good
            wrongKey["signature"] = good["signature"]!.uppercased()
            cases.append((wrongKey, .signatureMismatch))
            var otherRequest = good
            otherRequest["requestid"] = UUID().uuidString.lowercased()
            cases.append((otherRequest, .signatureMismatch))
            var notTicks = good
            notTicks["timestamp"] = "+" + good["timestamp"]!
            cases.append((notTicks, .signatureMismatch))
            for (headers, reason) in cases {
                let response = fixture.deliver(headers: headers)
                #expect(response.status.code == 401, "\(reason)")
                let verdict = SignedHeaders(
                    signature: headers["signature"], timestamp: headers["timestamp"], requestID: headers["requestid"]
                ).verify(now: Date(), clientID: WebhookFixture.factsClientID, keys: [Array(fixture.key.utf8)])
                #expect(throws: reason) { try verdict.get() }
            }
            #expect(try fixture.events().isEmpty)
            #expect(try fixture.jobs().isEmpty)
        }
    }

    @Test("The key before a reconnect is accepted for ten minutes after it, and refused later")
    func previousKeyGrace() throws {
        try WebhookFixture.with { (fixture) throws in
            try fixture.connect(
                fixture.firm, account: fixture.accountID, key: "new-key", previous: fixture.key,
                rotatedSecondsAgo: 540)
            let ticks = DotNetTicks.from(Date())
            #expect(fixture.deliver(headers: fixture.headers(ticks: ticks)).status.code == 200)
            #expect(fixture.deliver(headers: fixture.headers(ticks: ticks, key: "new-key")).status.code == 200)
            try fixture.connect(
                fixture.firm, account: fixture.accountID, key: "new-key", previous: fixture.key,
                rotatedSecondsAgo: 660)
            #expect(fixture.deliver(headers: fixture.headers(ticks: ticks)).status.code == 401)
            #expect(fixture.deliver(headers: fixture.headers(ticks: ticks, key: "new-key")).status.code == 200)
            #expect(try fixture.events().count == 3)
        }
    }

    @Test("Valid headers replayed with a tampered body are the same delivery: 200, no new row, no new job")
    func tamperedReplay() throws {
        try WebhookFixture.with { (fixture) throws in
            let headers = fixture.headers(ticks: DotNetTicks.from(Date()))
            #expect(fixture.deliver(headers: headers).status.code == 200)
            let tampered = WebhookFixture.body(type: "contact.updated", resourceID: UUID().uuidString.lowercased())
            let replay = fixture.deliver(tampered, headers: headers)
            #expect(replay.status.code == 200)
            #expect(WebhookFixture.status(replay) == "duplicate")
            let events = try fixture.events()
            #expect(events.count == 1)
            #expect(try events.first?.string("event_type") == "matter.updated")
            #expect(try fixture.jobs().count == 1)
        }
    }

    @Test("A retry (same RequestId, new Timestamp) is a duplicate; another event of the same request is not")
    func retriesAndSiblings() throws {
        try WebhookFixture.with { (fixture) throws in
            let requestID = UUID().uuidString.lowercased()
            let ticks = DotNetTicks.from(Date())
            #expect(fixture.deliver(headers: fixture.headers(ticks: ticks, requestID: requestID)).status.code == 200)
            let retry = fixture.deliver(headers: fixture.headers(ticks: ticks + 20_000_000, requestID: requestID))
            #expect(WebhookFixture.status(retry) == "duplicate")
            let sibling = fixture.deliver(
                WebhookFixture.body(resourceID: UUID().uuidString.lowercased()),
                headers: fixture.headers(ticks: ticks + 1, requestID: requestID))
            #expect(WebhookFixture.status(sibling) == "accepted")
            #expect(try fixture.events().count == 2)
            #expect(try fixture.jobs().count == 2)
        }
    }

    @Test("A delivery for an account no firm has connected is acknowledged, ignored and counted")
    func unconnectedAccount() throws {
        try WebhookFixture.with { (fixture) throws in
            let stranger = UUID().uuidString.lowercased()
            let ticks = DotNetTicks.from(Date())
            for _ in 0..<2 {
                let response = fixture.deliver(
                    WebhookFixture.body(account: stranger), headers: fixture.headers(ticks: ticks))
                #expect(response.status.code == 200)
                #expect(WebhookFixture.status(response) == "ignored")
            }
            // A disconnected firm's account too, whatever the signature.
            let other = try fixture.seed.firm("Disconnected")
            try fixture.connect(other, account: "disconnected-account", key: "k", active: false)
            #expect(
                WebhookFixture.status(
                    fixture.deliver(
                        WebhookFixture.body(account: "disconnected-account"),
                        headers: [
                            "content-type": "application/json"
                        ])) == "ignored")
            #expect(try fixture.ignored() == [stranger: 2, "disconnected-account": 1])
            #expect(try fixture.events().isEmpty)
            #expect(try fixture.jobs().isEmpty)
        }
    }

    @Test(
        "The app role cannot read or write the ignored-deliveries table, nor find a firm by account without the function"
    )
    func ignoredTableIsClosed() throws {
        try WebhookFixture.with { (fixture) throws in
            try fixture.app.withConnection { connection in
                #expect(throws: (any Error).self) {
                    try connection.execute("SELECT count(*) FROM smokeball_ignored_webhooks")
                }
                #expect(throws: (any Error).self) {
                    try connection.execute("INSERT INTO smokeball_ignored_webhooks (account_id) VALUES ('x')")
                }
                let rows = try connection.transaction { connection in
                    try connection.execute("SELECT set_config('app.webhook_account_id', $1, true)", [fixture.accountID])
                    return try connection.execute("SELECT firm_id FROM firm_integrations").rows
                }
                #expect(rows.isEmpty)
            }
        }
    }

    @Test("Malformed bodies (seeded fuzz) are 400 and store nothing")
    func malformedBodies() throws {
        try WebhookFixture.with { (fixture) throws in
            let seed = SeededGenerator.seed(environment: "WEBHOOK_FUZZ_SEED", default: 0x5EB0_0C13)
            var random = SeededGenerator(seed: seed)
            let valid = try #require(
                try JSONSerialization.jsonObject(with: Data(WebhookFixture.body().utf8)) as? [String: Any])
            let required = ["accountId", "subscriptionId", "type", "source", "payload", "timestamp"]
            let wrongValues: [Any] = [
                NSNull(), 1, true, "", [1], ["a": 1], 1.5, -3, String(repeating: "x", count: 300),
            ]
            var bodies: [[UInt8]] = []
            for name in required {
                var missing = valid
                missing[name] = nil
                bodies.append(try JSONSerialization.data(withJSONObject: missing).map { $0 })
            }
            let text = Array(WebhookFixture.body().utf8)
            for _ in 0..<60 {
                switch Int.random(in: 0..<3, using: &random) {
                case 0:
                    var changed = valid
                    let name = required.randomElement(using: &random)!
                    var value = wrongValues.randomElement(using: &random)!
                    // Values that are right for the field are not malformed.
                    if name == "payload", value is [String: Any] { value = "p" }
                    if ["accountId", "subscriptionId", "type", "source"].contains(name),
                        let string = value as? String, !string.isEmpty, string.count <= 200
                    {
                        value = 7
                    }
                    if name == "timestamp", (value as? Int).map({ $0 > 0 }) == true, JSONBoolean.value(value) == nil {
                        value = -1
                    }
                    changed[name] = value
                    bodies.append(try JSONSerialization.data(withJSONObject: changed).map { $0 })
                case 1:
                    bodies.append(Array(text.prefix(Int.random(in: 0..<(text.count - 1), using: &random))))
                default:
                    var bytes = text
                    for _ in 0..<3 {
                        bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(
                            in: 0...255, using: &random)
                    }
                    if (try? JSONSerialization.jsonObject(with: Data(bytes))) == nil { bodies.append(bytes) }
                }
            }
            let headers = fixture.headers(ticks: DotNetTicks.from(Date()))
            for body in bodies {
                let response = fixture.deliver(bytes: body, headers: headers)
                #expect(response.status.code == 400, "seed \(seed): \(String(decoding: body, as: UTF8.self))")
            }
            #expect(try fixture.events().isEmpty)
            #expect(try fixture.ignored().isEmpty)
        }
    }

    @Test("A body in UTF-16 or with a NUL byte is 400 and stores nothing; one with a UTF-8 byte-order mark is stored")
    func encodings() throws {
        try WebhookFixture.with { (fixture) throws in
            let body = WebhookFixture.body()
            let utf16 = Array(body.utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
            for bytes in [[0xFF, 0xFE] + utf16, utf16, Array(body.utf8) + [0]] {
                let response = fixture.deliver(bytes: bytes, headers: fixture.headers(ticks: DotNetTicks.from(Date())))
                #expect(response.status.code == 400)
            }
            #expect(try fixture.events().isEmpty)
            let marked = fixture.deliver(
                bytes: [0xEF, 0xBB, 0xBF] + Array(body.utf8), headers: fixture.headers(ticks: DotNetTicks.from(Date())))
            #expect(marked.status.code == 200)
            let events = try fixture.events()
            #expect(events.count == 1)
            #expect(try events.first?.string("payload").contains("Sale of Franchise") == true)
        }
    }

    @Test(
        "A signed delivery with a \\u0000 escape anywhere in its JSON is 400 invalid_value and stores nothing (jsonb cannot hold it); an escaped backslash before u0000 is text and is stored"
    )
    func nulEscapes() throws {
        try WebhookFixture.with { (fixture) throws in
            let body = WebhookFixture.body()
            for nul in [
                body.replacingOccurrences(of: "Sale of Franchise", with: #"Sale\u0000"#),
                body.replacingOccurrences(of: #""source": "API""#, with: #""source": "A\u0000PI""#),
                body.replacingOccurrences(of: #""number": "10001""#, with: #""\u0000": 1"#),
                body.replacingOccurrences(of: #""source": "API""#, with: #""source": "API", "extra": "\u0000""#),
            ] {
                let response = fixture.deliver(nul, headers: fixture.headers(ticks: DotNetTicks.from(Date())))
                #expect(response.status.code == 400, "\(nul)")
                #expect(WebhookFixture.errorCode(response) == "invalid_value")
            }
            #expect(try fixture.events().isEmpty)
            #expect(try fixture.jobs().isEmpty)
            let text = body.replacingOccurrences(of: "Sale of Franchise", with: #"C:\\u0000"#)
            let stored = fixture.deliver(text, headers: fixture.headers(ticks: DotNetTicks.from(Date())))
            #expect(WebhookFixture.status(stored) == "accepted")
            #expect(try fixture.events().first?.string("payload").contains(#"C:\\u0000"#) == true)
        }
    }

    @Test("Only POST is served, and a body over 256 KiB is 413")
    func methodAndSize() throws {
        try WebhookFixture.with { (fixture) throws in
            let headers = fixture.headers(ticks: DotNetTicks.from(Date()))
            let get = fixture.deliver(headers: headers, method: "GET")
            #expect(get.status.code == 405)
            #expect(get.headers.contains { $0.0 == "Allow" && $0.1 == "POST" })
            let big = fixture.deliver(
                bytes: Array(WebhookFixture.body().utf8) + [UInt8](repeating: 0x20, count: 256 * 1024),
                headers: headers)
            #expect(big.status.code == 413)
            #expect(try fixture.events().isEmpty)
        }
    }

    @Test(
        "A delivery whose transaction fails stores nothing and is not acknowledged; a retry stores it, pending on the queue"
    )
    func eventStoredOrNot() throws {
        try WebhookFixture.with { (fixture) throws in
            try fixture.seed.connection.executeScript(
                """
                CREATE FUNCTION test_refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
                CREATE TRIGGER test_refuse_event AFTER INSERT ON smokeball_webhook_events
                    FOR EACH ROW EXECUTE FUNCTION test_refuse_event();
                """)
            let headers = fixture.headers(ticks: DotNetTicks.from(Date()))
            #expect(fixture.deliver(headers: headers).status.code == 500)
            #expect(try fixture.events().isEmpty)
            try fixture.seed.connection.executeScript("DROP TRIGGER test_refuse_event ON smokeball_webhook_events")
            #expect(WebhookFixture.status(fixture.deliver(headers: headers)) == "accepted")
            #expect(try fixture.events().count == 1)
            #expect(try fixture.jobs().count == 1)
        }
    }

    @Test(
        "A stored delivery wakes a worker that waits for events, once the event is committed, and notifies no one while none waits"
    )
    func storedDeliveryWakesWaitingWorkers() throws {
        try WebhookFixture.with { (fixture) throws in
            let listener = fixture.seed.connection
            try listener.listen(JobQueue.channel)
            // No worker waits (every one busy, or none running): no notification.
            #expect(
                WebhookFixture.status(fixture.deliver(headers: fixture.headers(ticks: DotNetTicks.from(Date()))))
                    == "accepted")
            #expect(try listener.waitForNotification(timeout: 0.5) == nil)
            // A worker waits (it holds the waiters' lock while it looks for work and sleeps).
            let woken = try JobQueue.waitingForWebhookEvents(listener) {
                #expect(
                    WebhookFixture.status(fixture.deliver(headers: fixture.headers(ticks: DotNetTicks.from(Date()))))
                        == "accepted")
                let notification = try listener.waitForNotification(timeout: 10)
                // By then the event is there to be claimed.
                #expect(try fixture.jobs().count == 2)
                return notification
            }
            #expect(woken?.channel == JobQueue.channel)
            // The worker stopped waiting: no notification again.
            #expect(
                WebhookFixture.status(fixture.deliver(headers: fixture.headers(ticks: DotNetTicks.from(Date()))))
                    == "accepted")
            #expect(try listener.waitForNotification(timeout: 0.5) == nil)
            #expect(try fixture.jobs().count == 3)
        }
    }

    @Test("A delivery's outcome, firm and event id go on the request's log line, never its key or signature")
    func outcomeIsLogged() throws {
        try WebhookFixture.with { (fixture) throws in
            let headers = fixture.headers(ticks: DotNetTicks.from(Date()))
            let accepted = fixture.deliver(headers: headers)
            let event = try #require(try fixture.events().first)
            #expect(accepted.logFields["webhook"] as? String == "accepted")
            #expect(accepted.logFields["firm_id"] as? String == fixture.firm.uuidString.lowercased())
            #expect(accepted.logFields["event_id"] as? String == (try event.uuid("id")).uuidString.lowercased())
            #expect(accepted.logFields["event_type"] as? String == "matter.updated")
            let duplicate = fixture.deliver(headers: headers)
            #expect(duplicate.logFields["webhook"] as? String == "duplicate")
            #expect(duplicate.logFields["event_id"] == nil)
            let logged = try JSONWriter.encode(accepted.logFields.merging(duplicate.logFields) { a, _ in a })
            let text = String(decoding: logged, as: UTF8.self)
            for secret in [fixture.key, headers["signature"] ?? "?"] { #expect(!text.contains(secret)) }
        }
    }

    @Test("Without Smokeball credentials nothing can be checked: 503")
    func notConfigured() throws {
        try WebhookFixture.with { (fixture) throws in
            let response = fixture.deliver(
                headers: fixture.headers(ticks: DotNetTicks.from(Date())), handler: fixture.handler(clientID: nil))
            #expect(response.status.code == 503)
            #expect(try fixture.events().isEmpty)
        }
    }
}
