import Basics
import Cryptography
import FastCGI
import Foundation
import HTTPClient
import PostgreSQL
import TestSupport
import Testing

@testable import SmokeballSandbox

/// Webhook subscriptions (checked against the spec) and delivery to a real local receiver:
/// body, Timestamp, RequestId and Signature headers, retries, duplicates, shuffling, revocation.
@Suite struct WebhooksTests {
    typealias F = SandboxFixture

    // MARK: Helpers

    /// The python receiver (Fixtures/webhook-receiver/receiver.py) on a free port, recording each
    /// request as a JSON line. Stopped by `stop()` or when released; it also exits when this
    /// process dies (its stdin closes).
    final class Receiver {
        let process = Process()
        let stdin = Pipe()
        let log: URL
        let port: Int

        var base: String { "http://127.0.0.1:\(port)" }

        init() throws {
            let script = try #require(
                Bundle.module.url(forResource: "Fixtures/webhook-receiver/receiver", withExtension: "py"))
            log = FileManager.default.temporaryDirectory.appendingPathComponent(
                "webhook-receiver-\(UUID().uuidString).jsonl")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let stdout = Pipe()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", script.path, log.path]
            process.standardInput = stdin
            process.standardOutput = stdout
            try process.run()
            var line: [UInt8] = []
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = stdout.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line += chunk
            }
            port = try #require(
                Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        }

        /// EOF on its stdin ends it; SIGKILL makes sure, since a child of the test process starts
        /// with SIGTERM blocked.
        func stop() {
            try? stdin.fileHandleForWriting.close()
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(at: log)
        }

        deinit { stop() }

        struct Received {
            let path: String
            let headers: [[String]]
            let body: String
            let status: Int

            func header(_ name: String) -> [String] {
                headers.filter { $0[0].caseInsensitiveCompare(name) == .orderedSame }.map { $0[1] }
            }

            var json: [String: Any] {
                (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
            }
        }

        func requests() -> [Received] {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { line in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    return nil
                }
                return Received(
                    path: object["path"] as? String ?? "", headers: object["headers"] as? [[String]] ?? [],
                    body: object["body"] as? String ?? "", status: object["status"] as? Int ?? 0)
            }
        }
    }

    static func send(
        _ fixture: F, _ method: String, _ path: String, token: String, body: Any? = nil, apiKey: String = F.apiKey,
        requestID: String? = nil, query: [String: String] = [:]
    ) -> Response {
        var headers = ["x-api-key": apiKey, "authorization": "Bearer " + token]
        if body != nil { headers["content-type"] = "application/json" }
        if let requestID { headers["requestid"] = requestID }
        let bytes = body.map { (try? JSONSerialization.data(withJSONObject: $0)).map { [UInt8]($0) } ?? [] } ?? []
        return fixture.call(method, path, query: query, headers: headers, body: bytes)
    }

    static func subscribe(
        _ fixture: F, token: String, url: String, types: [String] = ["matter.created"], key: String? = nil,
        name: String = "hooks", apiKey: String = F.apiKey
    ) throws -> String {
        var body: [String: Any] = ["name": name, "eventTypes": types, "eventNotificationUrl": url]
        if let key { body["key"] = key }
        let response = send(fixture, "POST", "/webhooks", token: token, body: body, apiKey: apiKey)
        #expect(response.status == .ok)
        return try #require(F.json(response)["id"] as? String)
    }

    /// An event as the other resources record it.
    static func record(
        _ fixture: F, type: String = "matter.created", account: UUID? = nil, requestID: String? = nil,
        clientID: String? = F.clientID, payload: [String: Any] = ["id": "3f1d7c1e-0000-4000-8000-000000000001"]
    ) throws -> Int64 {
        let connection = try Connection(url: fixture.databaseURL)
        let caller = clientID.map {
            APIServer.Caller(
                clientID: $0, accountID: account ?? fixture.accountID, region: "US", requestID: requestID,
                writeDelayMilliseconds: 0)
        }
        try Events.record(
            connection, account: account ?? fixture.accountID, type: type, caller: caller, payload: payload)
        return try connection.execute("SELECT max(id) AS id FROM sb_events").single().int("id")
    }

    static func deliveries(_ fixture: F, client: String = F.clientID) -> [[String: Any]] {
        let response = fixture.call("GET", "/_sandbox/webhooks/deliveries", query: ["client_id": client])
        return F.json(response)["deliveries"] as? [[String: Any]] ?? []
    }

    static func pass(_ fixture: F, at now: Date? = nil) throws -> WebhookDispatcher.PassCounts {
        try WebhookDispatcher.deliverPending(database: fixture.database, now: now ?? fixture.now, client: HTTPClient())
    }

    /// The code flow for another user or partner: (access, refresh).
    static func connect(
        _ fixture: F, email: String, password: String, clientID: String = F.clientID,
        secret: String = F.clientSecret, redirect: String = F.redirectURI
    ) -> String {
        let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789"
        let authorize = fixture.call(
            "POST", "/oauth2/authorize", headers: ["content-type": "application/x-www-form-urlencoded"],
            body: F.form([
                ("response_type", "code"), ("client_id", clientID), ("redirect_uri", redirect), ("state", "s"),
                ("username", email), ("password", password), ("decision", "allow"),
                ("code_challenge", Secrets.s256Challenge(verifier: verifier)), ("code_challenge_method", "S256"),
            ]))
        let code = F.redirectQuery(authorize)["code"] ?? ""
        let token = fixture.token(
            [
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect),
                ("code_verifier", verifier),
            ], authorization: F.basic(clientID, secret))
        return F.json(token)["access_token"] as? String ?? ""
    }

    static func problem(_ response: Response, _ status: HTTPStatus) {
        #expect(response.status == status)
        #expect(response.header("Content-Type") == "application/problem+json")
        #expect(OpenAPIValidator.smokeball.problems(F.json(response), schema: "ProblemDetails") == [])
    }

    // MARK: Subscriptions

    @Test func eventTypesAreListed() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let response = Self.send(fixture, "GET", "/webhooks/types", token: access)
        #expect(response.status == .ok)
        let body = F.json(response)
        #expect(OpenAPIValidator.smokeball.problems(body, path: "/webhooks/types", method: "get", status: 200) == [])
        let types = body["value"] as? [String] ?? []
        #expect(types == Webhooks.eventTypes)
        for name in [
            "matter.created", "matter.updated", "matter.closed", "contact.created", "contact.updated",
            "contact.deleted", "files.updated", "memo.created", "invoice.finalized", "invoice.updated", "error",
        ] {
            #expect(types.contains(name), "\(name)")
        }
        #expect(body["href"] as? String == "http://sandbox.test/webhooks/types")
        #expect(Self.send(fixture, "POST", "/webhooks/types", token: access).status == .methodNotAllowed)
    }

    @Test func subscriptionsAreCreatedReadUpdatedAndDeletedPerTheSpec() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let spec = OpenAPIValidator.smokeball
        let created = Self.send(
            fixture, "POST", "/webhooks", token: access,
            body: [
                "name": "Matters and contacts", "eventTypes": ["matter.updated", "contact.created", "matter.updated"],
                "eventNotificationUrl": "https://hooks.example.test/smokeball?tenant=7", "key": "s3cret-signing-key",
            ])
        #expect(created.status == .ok)
        #expect(!F.text(created).contains("s3cret-signing-key"))
        #expect(!F.text(created).contains("\"key\""))
        let subscription = F.json(created)
        #expect(spec.problems(subscription, path: "/webhooks", method: "post", status: 200) == [])
        let id = try #require(subscription["id"] as? String)
        #expect(UUID(uuidString: id) != nil)
        #expect(subscription["href"] as? String == "http://sandbox.test/webhooks/\(id)")
        #expect(subscription["accountId"] as? String == fixture.accountID.uuidString.lowercased())
        #expect(subscription["name"] as? String == "Matters and contacts")
        #expect(subscription["eventTypes"] as? [String] == ["matter.updated", "contact.created"])
        #expect(subscription["eventNotificationUrl"] as? String == "https://hooks.example.test/smokeball?tenant=7")
        let lastUpdated = try #require((subscription["lastUpdated"] as? NSNumber)?.int64Value)
        #expect(abs(DotNetTicks.date(lastUpdated).timeIntervalSince(fixture.now)) < 5)
        #expect(subscription["createdDateUtc"] as? String == subscription["updatedDateUtc"] as? String)

        let listed = Self.send(fixture, "GET", "/webhooks", token: access)
        #expect(listed.status == .ok)
        let page = F.json(listed)
        #expect(spec.problems(page, path: "/webhooks", method: "get", status: 200) == [])
        #expect(page["size"] as? Int == 1)
        #expect((page["value"] as? [[String: Any]])?.map { $0["id"] as? String } == [id])
        #expect(!F.text(listed).contains("s3cret-signing-key"))

        let read = Self.send(fixture, "GET", "/webhooks/\(id)", token: access)
        #expect(read.status == .ok)
        #expect(spec.problems(F.json(read), path: "/webhooks/{id}", method: "get", status: 200) == [])
        #expect(F.json(read)["eventTypes"] as? [String] == ["matter.updated", "contact.created"])

        fixture.advance(by: 60)
        let updated = Self.send(
            fixture, "PUT", "/webhooks/\(id)", token: access,
            body: ["eventTypes": ["contact.deleted"], "name": "Only deletions", "key": "rotated-key"])
        #expect(updated.status == .ok)
        let after = F.json(updated)
        #expect(spec.problems(after, path: "/webhooks/{id}", method: "put", status: 200) == [])
        #expect(after["eventTypes"] as? [String] == ["contact.deleted"])
        #expect(after["name"] as? String == "Only deletions")
        // Not given: unchanged.
        #expect(after["eventNotificationUrl"] as? String == "https://hooks.example.test/smokeball?tenant=7")
        #expect(after["createdDateUtc"] as? String == subscription["createdDateUtc"] as? String)
        #expect(after["updatedDateUtc"] as? String != subscription["updatedDateUtc"] as? String)
        #expect(((after["lastUpdated"] as? NSNumber)?.int64Value ?? 0) - lastUpdated >= 600_000_000)
        #expect(!F.text(updated).contains("rotated-key"))
        let stored = try Connection(url: fixture.databaseURL).execute(
            "SELECT key FROM sb_webhook_subscriptions WHERE id = $1", [UUID(uuidString: id)]
        ).single().optionalString("key")
        #expect(stored == "rotated-key")

        let deleted = Self.send(fixture, "DELETE", "/webhooks/\(id)", token: access)
        #expect(deleted.status == .ok)
        Self.problem(Self.send(fixture, "GET", "/webhooks/\(id)", token: access), .notFound)
        Self.problem(Self.send(fixture, "DELETE", "/webhooks/\(id)", token: access), .notFound)
        Self.problem(Self.send(fixture, "GET", "/webhooks/not-a-uuid", token: access), .notFound)
        #expect(F.json(Self.send(fixture, "GET", "/webhooks", token: access))["size"] as? Int == 0)
    }

    @Test func listsArePaged() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        var ids: [String] = []
        for index in 0..<3 {
            ids.append(try Self.subscribe(fixture, token: access, url: "http://127.0.0.1:9/\(index)"))
            fixture.advance(by: 1)
        }
        let first = F.json(Self.send(fixture, "GET", "/webhooks", token: access, query: ["Limit": "2"]))
        #expect(OpenAPIValidator.smokeball.problems(first, path: "/webhooks", method: "get", status: 200) == [])
        #expect(first["size"] as? Int == 3)
        #expect(first["limit"] as? Int == 2)
        #expect((first["value"] as? [[String: Any]])?.map { $0["id"] as? String } == [ids[0], ids[1]])
        #expect(
            (first["next"] as? [String: Any])?["href"] as? String == "http://sandbox.test/webhooks?offset=2&limit=2")
        Self.problem(Self.send(fixture, "GET", "/webhooks", token: access, query: ["Limit": "501"]), .badRequest)
    }

    @Test(arguments: [
        (#"{"eventTypes": ["matter.exploded"], "eventNotificationUrl": "https://a.test/h"}"#, "matter.exploded"),
        (#"{"eventTypes": [], "eventNotificationUrl": "https://a.test/h"}"#, "eventTypes"),
        (#"{"eventTypes": "matter.created", "eventNotificationUrl": "https://a.test/h"}"#, "eventTypes"),
        (#"{"eventNotificationUrl": "https://a.test/h"}"#, "eventTypes"),
        (#"{"eventTypes": ["matter.created"]}"#, "eventNotificationUrl"),
        (#"{"eventTypes": ["matter.created"], "eventNotificationUrl": "ftp://a.test/h"}"#, "eventNotificationUrl"),
        (#"{"eventTypes": ["matter.created"], "eventNotificationUrl": "/relative/hook"}"#, "eventNotificationUrl"),
        (#"{"eventTypes": ["matter.created"], "eventNotificationUrl": "https:///no-host"}"#, "eventNotificationUrl"),
        (#"{"eventTypes": ["matter.created"], "eventNotificationUrl": "http://a.test/a b"}"#, "eventNotificationUrl"),
        (#"{"eventTypes": ["matter.created"], "eventNotificationUrl": "https://a.test/h", "key": 7}"#, "key"),
        (#"["not", "an", "object"]"#, "JSON object"),
    ])
    func invalidSubscriptionsAreRefused(body: String, named: String) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let response = fixture.call(
            "POST", "/webhooks",
            headers: ["x-api-key": F.apiKey, "authorization": "Bearer " + access, "content-type": "application/json"],
            body: Array(body.utf8))
        Self.problem(response, .badRequest)
        #expect((F.json(response)["detail"] as? String)?.contains(named) == true)
        let count = try Connection(url: fixture.databaseURL).execute(
            "SELECT count(*) AS n FROM sb_webhook_subscriptions"
        ).single().int("n")
        #expect(count == 0)
    }

    @Test func anotherAccountOrPartnerCannotReachASubscription() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let id = try Self.subscribe(fixture, token: access, url: "https://mine.test/hook")

        // Another firm, same partner.
        let other = fixture.admin(
            "POST", "/_sandbox/accounts",
            ["name": "Other Firm", "users": [["email": "owner@other-firm.test", "password": "another password"]]])
        #expect(other.status.code == 201)
        let otherAccess = Self.connect(fixture, email: "owner@other-firm.test", password: "another password")
        #expect(!otherAccess.isEmpty)
        #expect(F.json(Self.send(fixture, "GET", "/webhooks", token: otherAccess))["size"] as? Int == 0)
        Self.problem(Self.send(fixture, "GET", "/webhooks/\(id)", token: otherAccess), .notFound)
        Self.problem(
            Self.send(fixture, "PUT", "/webhooks/\(id)", token: otherAccess, body: ["name": "stolen"]), .notFound)
        Self.problem(Self.send(fixture, "DELETE", "/webhooks/\(id)", token: otherAccess), .notFound)

        // Another partner, same firm.
        let registered = fixture.admin(
            "POST", "/_sandbox/clients",
            [
                "client_id": "second-partner", "client_secret": "second-secret-value", "api_key": "second-api-key",
                "redirect_uris": ["http://second.test/cb"], "rate_per_second": 1000, "burst": 1000,
            ])
        #expect(registered.status.code == 201)
        let partnerAccess = Self.connect(
            fixture, email: F.email, password: F.password, clientID: "second-partner", secret: "second-secret-value",
            redirect: "http://second.test/cb")
        #expect(!partnerAccess.isEmpty)
        let partnerList = Self.send(fixture, "GET", "/webhooks", token: partnerAccess, apiKey: "second-api-key")
        #expect(F.json(partnerList)["size"] as? Int == 0)
        Self.problem(
            Self.send(
                fixture, "PUT", "/webhooks/\(id)", token: partnerAccess, body: ["name": "stolen"],
                apiKey: "second-api-key"), .forbidden)
        Self.problem(
            Self.send(fixture, "DELETE", "/webhooks/\(id)", token: partnerAccess, apiKey: "second-api-key"), .forbidden)

        let mine = F.json(Self.send(fixture, "GET", "/webhooks/\(id)", token: access))
        #expect(mine["name"] as? String == "hooks")
    }

    // MARK: Delivery

    /// FACTS.md's check values for Smokeball's signature.
    @Test func theSignatureMatchesSmokeballsPublishedCheckValues() {
        #expect(
            WebhookDispatcher.signature(
                key: "ei7641529ue420n8b9aa", timestamp: "638609288928990639",
                requestID: "e56f2c3f-b6de-4310-a7a2-c139d62f9711", clientID: "lou1qnn0llav95f")
                == "58817681863148b0e624c00f3094f99e1af31cd7b99a3c2e0655d64a2764d650")
    }

    @Test func aDeliveryIsSignedAndShapedAsSmokeballSendsIt() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        // Recorded before the subscription existed: never delivered to it.
        _ = try Self.record(fixture, requestID: "too-early")
        let key = "da4e7fd1-5394-4ca9-b1c6-e18c4e2bf262"
        let subscription = try Self.subscribe(
            fixture, token: access, url: receiver.base + "/ok/hook", types: ["matter.created", "contact.updated"],
            key: key)
        let payload: [String: Any] = ["id": "5c1d4a2e-8f7b-4c1a-9d3e-2b6f0a9e7c11", "number": "2024-001"]
        let eventID = try Self.record(fixture, requestID: "req-matter-1", payload: payload)
        _ = try Self.record(fixture, type: "contact.deleted", requestID: "not-subscribed")

        let answer = fixture.call("POST", "/_sandbox/webhooks/deliver")
        #expect(answer.status == .ok)
        let counts = F.json(answer)
        #expect(counts["events"] as? Int == 3)
        #expect(counts["created"] as? Int == 1)
        #expect(counts["delivered"] as? Int == 1)

        let received = receiver.requests()
        #expect(received.count == 1)
        let request = try #require(received.first)
        #expect(request.path == "/ok/hook")
        #expect(request.header("Content-Type") == ["application/json; charset=utf-8"])
        // Exactly the headers Smokeball documents, besides what HTTP needs: no User-Agent,
        // Accept or X- headers that a receiver could come to rely on.
        #expect(
            Set(request.headers.map { $0[0].lowercased() })
                == ["host", "content-length", "content-type", "timestamp", "requestid", "signature"])
        let body = request.json
        #expect(Set(body.keys) == ["accountId", "subscriptionId", "type", "source", "payload", "timestamp"])
        #expect(body["accountId"] as? String == fixture.accountID.uuidString.lowercased())
        #expect(body["subscriptionId"] as? String == subscription)
        #expect(body["type"] as? String == "matter.created")
        #expect(body["source"] as? String == "API")
        #expect(NSDictionary(dictionary: body["payload"] as? [String: Any] ?? [:]).isEqual(to: payload))
        let eventAt = try Connection(url: fixture.databaseURL).execute(
            "SELECT created_at FROM sb_events WHERE id = $1", [eventID]
        ).single().date("created_at")
        let eventTicks = (body["timestamp"] as? NSNumber)?.int64Value
        #expect(eventTicks.map { abs($0 - DotNetTicks.from(eventAt)) <= 10 } == true)

        let timestamp = try #require(request.header("Timestamp").first)
        let ticks = try #require(Int64(timestamp))
        #expect(abs(DotNetTicks.date(ticks).timeIntervalSince(fixture.now)) < 5)
        #expect(request.header("RequestId") == ["req-matter-1"])
        let expected = Hex.encode(
            HMACSHA256.authenticate(Array("\(timestamp)|req-matter-1|\(F.clientID)".utf8), key: Array(key.utf8)))
        #expect(request.header("Signature") == [expected])
        #expect(expected == expected.lowercased() && expected.count == 64)

        let deliveries = Self.deliveries(fixture)
        #expect(deliveries.count == 1)
        #expect(deliveries.first?["status"] as? String == "delivered")
        #expect(deliveries.first?["attempts"] as? Int == 1)
        #expect(deliveries.first?["last_status"] as? Int == 200)
        #expect(deliveries.first?["event_type"] as? String == "matter.created")
        #expect(deliveries.first?["url"] as? String == receiver.base + "/ok/hook")

        // Nothing left: a second pass sends nothing.
        #expect(try Self.pass(fixture).attempted == 0)
        #expect(receiver.requests().count == 1)
    }

    @Test func aFailedDeliveryIsRetriedAfterItsBackoffAndDeliveredOnce() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/flaky/1/hook")
        // A change made by a firm user: no RequestId of its own, source Smokeball.
        _ = try Self.record(fixture, clientID: nil)
        let start = fixture.now

        let first = try Self.pass(fixture, at: start)
        #expect(first.attempted == 1 && first.retrying == 1 && first.delivered == 0)
        #expect(receiver.requests().map(\.status) == [500])
        var delivery = try #require(Self.deliveries(fixture).first)
        #expect(delivery["status"] as? String == "pending")
        #expect(delivery["attempts"] as? Int == 1)
        #expect(delivery["last_status"] as? Int == 500)

        // Not due yet (backoff 1 s).
        #expect(try Self.pass(fixture, at: start.addingTimeInterval(0.5)).attempted == 0)
        #expect(receiver.requests().count == 1)

        let second = try Self.pass(fixture, at: start.addingTimeInterval(2))
        #expect(second.attempted == 1 && second.delivered == 1)
        #expect(try Self.pass(fixture, at: start.addingTimeInterval(600)).attempted == 0)
        let received = receiver.requests()
        #expect(received.map(\.status) == [500, 200])
        #expect(received.map(\.body).count == 2 && received[0].body == received[1].body)
        #expect(received[0].json["source"] as? String == "Smokeball")
        // A RequestId is made up once and kept across retries; no key, no Signature.
        let requestID = try #require(received.first?.header("RequestId").first)
        #expect(!requestID.isEmpty)
        #expect(received[1].header("RequestId") == [requestID])
        #expect(received[0].header("Signature").isEmpty)
        delivery = try #require(Self.deliveries(fixture).first)
        #expect(delivery["status"] as? String == "delivered")
        #expect(delivery["attempts"] as? Int == 2)
        #expect(delivery["sends"] as? Int == 2)
    }

    @Test func aDeliveryGivesUpAfterEightAttemptsWithGrowingBackoff() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/fail/hook")
        _ = try Self.record(fixture)
        var clock = fixture.now
        var waits: [TimeInterval] = []
        for attempt in 1...8 {
            let counts = try Self.pass(fixture, at: clock)
            #expect(counts.attempted == 1, "attempt \(attempt)")
            let next = try Connection(url: fixture.databaseURL).execute(
                "SELECT next_attempt_at FROM sb_webhook_deliveries"
            ).single().date("next_attempt_at")
            waits.append((next.timeIntervalSince(clock) * 10).rounded() / 10)
            // Just before the next attempt is due, nothing is sent.
            if attempt < 8 { #expect(try Self.pass(fixture, at: next.addingTimeInterval(-0.05)).attempted == 0) }
            clock = next
        }
        #expect(Array(waits.prefix(7)) == [1, 2, 4, 8, 16, 32, 64])
        #expect(try Self.pass(fixture, at: clock.addingTimeInterval(3600)).attempted == 0)
        #expect(receiver.requests().count == 8)
        let delivery = try #require(Self.deliveries(fixture).first)
        #expect(delivery["status"] as? String == "failed")
        #expect(delivery["attempts"] as? Int == 8)
    }

    @Test func theDuplicateKnobSendsEachDeliveryTwice() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/ok/dup", key: "dup-key")
        let knobs = fixture.admin("POST", "/_sandbox/webhooks/knobs", ["client_id": F.clientID, "duplicate": true])
        #expect(knobs.status == .ok)
        #expect(F.json(knobs)["duplicate"] as? Bool == true)
        #expect(F.json(knobs)["shuffle"] as? Bool == false)
        #expect(
            fixture.admin("POST", "/_sandbox/webhooks/knobs", ["client_id": F.clientID, "duplicate": "yes"]).status
                == .badRequest)
        _ = try Self.record(fixture, requestID: "dup-req")

        let counts = try Self.pass(fixture)
        #expect(counts.attempted == 1 && counts.delivered == 1)
        let received = receiver.requests()
        #expect(received.count == 2)
        #expect(received.count == 2 && received[0].body == received[1].body)
        for name in ["Timestamp", "RequestId", "Signature"] {
            #expect(received.count == 2 && received[0].header(name) == received[1].header(name), "\(name)")
        }
        #expect(received.first?.header("RequestId") == ["dup-req"])
        let deliveries = Self.deliveries(fixture)
        #expect(deliveries.count == 1)
        #expect(deliveries.first?["sends"] as? Int == 2)

        // Switched off again: one send.
        _ = fixture.admin("POST", "/_sandbox/webhooks/knobs", ["client_id": F.clientID, "duplicate": false])
        _ = try Self.record(fixture, requestID: "single-req")
        _ = try Self.pass(fixture)
        #expect(receiver.requests().count == 3)
    }

    @Test func theShuffleKnobSendsABatchOutOfOrder() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/ok/shuffled")
        _ = fixture.admin("POST", "/_sandbox/webhooks/knobs", ["client_id": F.clientID, "shuffle": true])
        let names = (0..<20).map { "req-\($0)" }
        for name in names { _ = try Self.record(fixture, requestID: name) }
        let counts = try Self.pass(fixture)
        #expect(counts.delivered == 20)
        let order = receiver.requests().compactMap { $0.header("RequestId").first }
        #expect(Set(order) == Set(names))
        #expect(order.count == 20)
        // One chance in 20! of the original order.
        #expect(order != names)
    }

    @Test func aSeededShuffleSendsTheSameBatchInTheSameOrderOnAFreshSandbox() throws {
        /// The order in which a fresh sandbox sends 20 events under the shuffle knob and `seed`.
        func order(seed: Int) throws -> [String] {
            let fixture = try F(rate: 1000, burst: 1000)
            let receiver = try Receiver()
            defer { receiver.stop() }
            let (access, _) = fixture.connect()
            _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/ok/seeded")
            let knobs = fixture.admin(
                "POST", "/_sandbox/webhooks/knobs", ["client_id": F.clientID, "shuffle": true, "shuffle_seed": seed])
            #expect(knobs.status == .ok)
            #expect((F.json(knobs)["shuffle_seed"] as? NSNumber)?.intValue == seed)
            for index in 0..<20 { _ = try Self.record(fixture, requestID: "seeded-\(index)") }
            #expect(try Self.pass(fixture).delivered == 20)
            return receiver.requests().compactMap { $0.header("RequestId").first }
        }
        let names = (0..<20).map { "seeded-\($0)" }
        let first = try order(seed: 1234)
        #expect(Set(first) == Set(names) && first.count == 20)
        #expect(first != names)
        #expect(try order(seed: 1234) == first)
        // Another seed, another order (the same one by chance: one in 20!).
        #expect(try order(seed: 1235) != first)
    }

    @Test func theShuffleSeedMustBeAWholeNumber() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        for bad: Any in [-1, 1.5, "7", true] {
            let answer = fixture.admin(
                "POST", "/_sandbox/webhooks/knobs", ["client_id": F.clientID, "shuffle": true, "shuffle_seed": bad])
            #expect(answer.status == .badRequest, "\(bad)")
        }
        // Not given: kept; the knobs read back without one at first.
        let knobs = fixture.admin("POST", "/_sandbox/webhooks/knobs", ["client_id": F.clientID, "shuffle": true])
        #expect(F.json(knobs)["shuffle_seed"] is NSNull)
    }

    @Test func concurrentDispatchersSendEachDeliveryOnce() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/ok/concurrent")
        let names = (0..<60).map { "c-\($0)" }
        for name in names { _ = try Self.record(fixture, requestID: name) }
        let url = fixture.databaseURL
        let now = fixture.now
        let delivered = Locked<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            let database = Database(url: url, options: .direct)
            do {
                let counts = try WebhookDispatcher.deliverPending(database: database, now: now, client: HTTPClient())
                delivered.withLock { $0.append(counts.delivered) }
            } catch {
                delivered.withLock { $0.append(-1000) }
            }
            database.disconnect()
        }
        #expect(delivered.value.reduce(0, +) == 60)
        let order = receiver.requests().compactMap { $0.header("RequestId").first }
        #expect(order.count == 60)
        #expect(Set(order) == Set(names))
        #expect(
            Self.deliveries(fixture).allSatisfy {
                $0["attempts"] as? Int == 1 && $0["status"] as? String == "delivered"
            })
    }

    @Test func notifySendsANoopToThatSubscriptionOnly() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        let id = try Self.subscribe(fixture, token: access, url: receiver.base + "/ok/one", key: "k1")
        _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/ok/two")
        let notified = Self.send(fixture, "POST", "/webhooks/\(id)/notify", token: access, requestID: "ping-1")
        #expect(notified.status == .ok)
        _ = try Self.pass(fixture)
        let received = receiver.requests()
        #expect(received.map(\.path) == ["/ok/one"])
        #expect(received.first?.json["type"] as? String == "noop")
        #expect(received.first?.json["subscriptionId"] as? String == id)
        #expect(received.first?.header("RequestId") == ["ping-1"])
        Self.problem(Self.send(fixture, "POST", "/webhooks/\(UUID().uuidString)/notify", token: access), .notFound)
    }

    @Test func anErrorEventGoesOnlyToThePartnerWhoseRequestFailed() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/ok/errors", types: ["error"])
        _ = try Self.record(fixture, type: "error", requestID: "someone-else", clientID: "another-partner")
        _ = try Self.record(fixture, type: "error", requestID: "mine", clientID: F.clientID)
        _ = try Self.pass(fixture)
        #expect(receiver.requests().compactMap { $0.header("RequestId").first } == ["mine"])
    }

    @Test func revokingTheGrantRemovesSubscriptionsAndStopsDelivery() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/ok/revoked")
        _ = try Self.subscribe(fixture, token: access, url: receiver.base + "/flaky/5/pending")
        // One delivery already failing before the revoke.
        _ = try Self.record(fixture, type: "matter.created", requestID: "before")
        let first = try Self.pass(fixture)
        #expect(first.delivered == 1 && first.retrying == 1)

        fixture.advance(by: 1)
        let revoked = fixture.admin(
            "POST", "/_sandbox/revoke", ["account_id": fixture.accountID.uuidString.lowercased()])
        #expect(revoked.status == .ok)
        // Gone with the grant, before the dispatcher's next pass.
        #expect(F.json(revoked)["subscriptions_removed"] as? Int == 2)
        _ = try Self.record(fixture, requestID: "after")
        let counts = try Self.pass(fixture, at: fixture.now.addingTimeInterval(60))
        #expect(counts.purged == 0)
        #expect(counts.created == 0)
        #expect(counts.attempted == 0)
        #expect(receiver.requests().count == 2)
        #expect(receiver.requests().allSatisfy { $0.header("RequestId") == ["before"] })
        let remaining = try Connection(url: fixture.databaseURL).execute(
            "SELECT count(*) AS n FROM sb_webhook_subscriptions"
        ).single().int("n")
        #expect(remaining == 0)
        #expect(Self.deliveries(fixture).map { $0["status"] as? String ?? "" }.sorted() == ["cancelled", "delivered"])

        // Reconnecting does not bring them back.
        let (again, _) = fixture.connect()
        #expect(F.json(Self.send(fixture, "GET", "/webhooks", token: again))["size"] as? Int == 0)
    }

    @Test func subscriptionsOfALapsedGrantAreGoneAfterReconnecting() throws {
        // The dispatcher never ran between the revoke and the reconnection: the API still
        // notices that the grant lapsed after the subscription was made.
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        _ = try Self.subscribe(fixture, token: access, url: "https://gone.test/hook")
        fixture.advance(by: 1)
        _ = fixture.admin("POST", "/_sandbox/revoke", ["account_id": fixture.accountID.uuidString.lowercased()])
        fixture.advance(by: 1)
        let (again, _) = fixture.connect()
        #expect(F.json(Self.send(fixture, "GET", "/webhooks", token: again))["size"] as? Int == 0)
        // A subscription made on the new grant stays.
        _ = try Self.subscribe(fixture, token: again, url: "https://kept.test/hook")
        fixture.advance(by: 1)
        #expect(F.json(Self.send(fixture, "GET", "/webhooks", token: again))["size"] as? Int == 1)
    }
}
