import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// Every event type the sandbox emits, made to happen through the API and delivered for real to
/// the test receiver, then validated against JSON Schemas written from FACTS.md
/// (Fixtures/webhook-schemas): the envelope, and the payload of each type.
@Suite struct WebhookPayloadTests {
    typealias F = SandboxFixture
    typealias W = WebhooksTests

    /// The payload schema of each emitted type. A type added to `Events.emitted` without one
    /// fails `everyEmittedTypeValidatesThroughARealDelivery`.
    static let payloadSchemas = [
        "matter.created": "matter.json", "matter.updated": "matter.json", "matter.closed": "matter.json",
        "matter.deleted": "matter.json", "files.updated": "matter.json", "contact.created": "contact.json",
        "contact.updated": "contact.json", "contact.deleted": "contact.json", "memo.created": "memo.json",
        "error": "error.json", "noop": "noop.json",
    ]

    static let schemas: OpenAPIValidator = {
        do {
            let folder = try #require(Bundle.module.resourceURL).appendingPathComponent("Fixtures/webhook-schemas")
            return try OpenAPIValidator(schemaDirectory: folder)
        } catch {
            fatalError("cannot load the webhook schemas: \(error)")
        }
    }()

    static func object(_ response: Response) -> [String: Any] { F.json(response) }

    /// Writes through the API as the signed-in user; the Link's id.
    static func write(
        _ fixture: F, _ method: String, _ path: String, _ token: String, _ body: Any?, requestID: String
    ) throws -> String {
        let response = W.send(fixture, method, path, token: token, body: body, requestID: requestID)
        #expect(response.status == .accepted, "\(method) \(path): \(F.text(response))")
        return try #require(F.json(response)["id"] as? String)
    }

    @Test func everyEmittedTypeValidatesThroughARealDelivery() throws {
        #expect(Set(Self.payloadSchemas.keys) == Set(Events.emitted))
        #expect(Self.schemas.unsupportedKeywords.isEmpty)
        let fixture = try F(rate: 1000, burst: 1000)
        let receiver = try W.Receiver()
        defer { receiver.stop() }
        let (access, _) = fixture.connect()
        let user = try Connection(url: fixture.databaseURL).execute(
            "SELECT id FROM sb_users WHERE account_id = $1", [fixture.accountID]
        ).single().uuid("id").uuidString.lowercased()
        // noop cannot be subscribed to: notify sends it to one subscription.
        let subscribable = Events.emitted.filter { $0 != "noop" }
        #expect(subscribable.allSatisfy(Webhooks.eventTypes.contains))
        let subscription = try W.subscribe(
            fixture, token: access, url: receiver.base + "/ok/all", types: subscribable, key: "schema-key")

        let smith = try Self.write(
            fixture, "POST", "/contacts", access,
            ["person": ["firstName": "Avery", "lastName": "Smith", "email": "avery@example.test"]],
            requestID: "contact-smith")
        let acme = try Self.write(
            fixture, "POST", "/contacts", access, ["company": ["name": "Acme Holdings"]], requestID: "contact-acme")
        let temporary = try Self.write(
            fixture, "POST", "/contacts", access, ["person": ["lastName": "Gone"]], requestID: "contact-gone")
        _ = try Self.write(
            fixture, "PUT", "/contacts/\(smith)", access, ["person": ["email": "avery.smith@example.test"]],
            requestID: "contact-update")
        _ = try Self.write(fixture, "DELETE", "/contacts/\(temporary)", access, nil, requestID: "contact-delete")

        let divorce = try MattersTests.matterType(fixture, "Divorce")
        let matter = try Self.write(
            fixture, "POST", "/matters", access,
            [
                "matterTypeId": divorce, "clientIds": [smith], "otherSideIds": [acme], "status": "Open",
                "number": "AM-0323-0005", "description": "Sale",
            ], requestID: "matter-create")
        _ = try Self.write(
            fixture, "PATCH", "/matters/\(matter)", access, ["description": "Sale of franchise"],
            requestID: "matter-update")
        let memo = try Self.write(
            fixture, "POST", "/matters/\(matter)/memos", access, ["title": "Intake", "text": "Called."],
            requestID: "memo-create")
        let added = W.send(
            fixture, "POST", "/matters/\(matter)/documents/files", token: access, body: ["fileName": "deed.pdf"],
            requestID: "file-add")
        let uploadURL = try #require(F.json(added)["uploadUrl"] as? String)
        #expect(fixture.call("PUT", url: uploadURL, body: Array("%PDF".utf8)).status == .ok)
        _ = try Self.write(
            fixture, "PATCH", "/matters/\(matter)", access, ["status": "Closed"], requestID: "matter-close")
        _ = try Self.write(fixture, "DELETE", "/matters/\(matter)", access, nil, requestID: "matter-delete")
        let failed = try Self.write(
            fixture, "POST", "/matters", access,
            ["matterTypeId": UUID().uuidString.lowercased(), "clientIds": [smith], "status": "Open"],
            requestID: "will-fail")
        #expect(
            W.send(fixture, "POST", "/webhooks/\(subscription)/notify", token: access, requestID: "ping").status
                == .ok)

        _ = try W.pass(fixture)
        let received = receiver.requests()
        #expect(Set(received.compactMap { $0.json["type"] as? String }) == Set(Events.emitted))
        for request in received {
            let body = try JSONSerialization.jsonObject(with: Data(request.body.utf8))
            let type = request.json["type"] as? String ?? ""
            #expect(Self.schemas.problems(body, schema: "notification.json") == [], "\(type)")
            let schema = try #require(Self.payloadSchemas[type], "\(type) has no payload schema")
            #expect(Self.schemas.problems(request.json["payload"] ?? NSNull(), schema: schema) == [], "\(type)")
            // .NET ticks as a JSON integer literal, never a string, fraction or exponent.
            #expect(request.body.contains(/"timestamp":[0-9]{18}[,}]/), "\(type)")
            #expect(request.json["userId"] as? String == user, "\(type)")
            #expect(request.json["source"] as? String == "API")
            #expect(request.header("Content-Type") == ["application/json; charset=utf-8"])
            #expect(
                Set(request.headers.map { $0[0].lowercased() })
                    == ["host", "content-length", "content-type", "timestamp", "requestid", "signature"], "\(type)")
        }

        func payloads(_ type: String) -> [[String: Any]] {
            received.filter { $0.json["type"] as? String == type }.compactMap { $0.json["payload"] as? [String: Any] }
        }
        // The matter as GET shows it, with Smokeball's {id, rel} links and computed title.
        let created = try #require(payloads("matter.created").first)
        #expect(created["id"] as? String == matter)
        #expect(created["title"] as? String == "AM-0323-0005 - Smith - Divorce - Acme Holdings")
        #expect(created["matterTypeId"] == nil && created["clientIds"] == nil)
        #expect(created["matterType"] as? [String: String] == ["id": divorce, "rel": "MatterTypes"])
        #expect((created["clients"] as? [[String: Any]])?.map { $0["rel"] as? String } == ["Contacts"])
        #expect((created["clients"] as? [[String: Any]])?.map { $0["id"] as? String } == [smith])
        // Taken when the event happened: the first update still says Open, though a GET now
        // says Deleted.
        #expect(payloads("matter.updated").first?["description"] as? String == "Sale of franchise")
        #expect(payloads("matter.updated").first?["status"] as? String == "Open")
        #expect(F.json(fixture.api("GET", "/matters/\(matter)", token: access))["status"] as? String == "Deleted")
        #expect(payloads("matter.closed").first?["status"] as? String == "Closed")
        #expect(payloads("matter.deleted").first?["status"] as? String == "Deleted")
        #expect(payloads("files.updated").first?["id"] as? String == matter)
        #expect(payloads("memo.created").first?["id"] as? String == memo)
        #expect(payloads("memo.created").first?["matterId"] as? String == matter)
        #expect(payloads("memo.created").first?["createdByUserId"] as? String == user)
        #expect(Set(payloads("contact.created").compactMap { $0["id"] as? String }) == [smith, acme, temporary])
        #expect(payloads("contact.deleted").first?["isDeleted"] as? Bool == true)
        let personUpdated = payloads("contact.updated").first?["person"] as? [String: Any]
        #expect(personUpdated?["email"] as? String == "avery.smith@example.test")
        // error: exactly {message, resourceName, resourceId}, with the failed write's RequestId.
        let error = try #require(received.first { $0.json["type"] as? String == "error" })
        #expect(error.header("RequestId") == ["will-fail"])
        let errorPayload = error.json["payload"] as? [String: Any] ?? [:]
        #expect(errorPayload["resourceName"] as? String == "matter")
        #expect(errorPayload["resourceId"] as? String == failed)
        #expect(payloads("noop").first?.isEmpty == true)
    }

    /// `userId` is the acting user: the one who signed in for a code-flow token; for a
    /// client-credentials token the `UserId` header when it names a user of the account;
    /// otherwise none.
    @Test func theUserIdIsTheActingUser() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let user = try Connection(url: fixture.databaseURL).execute(
            "SELECT id::text AS id FROM sb_users WHERE account_id = $1", [fixture.accountID]
        ).single().string("id")
        let service = try #require(
            F.json(fixture.token([("grant_type", "client_credentials")]))["access_token"] as? String)
        let contacts = "/\(fixture.accountID.uuidString.lowercased())/contacts"
        let body = F.jsonBytes(["person": ["lastName": "Acted"]])
        func create(_ token: String, path: String, userID: String?) {
            var headers = [
                "x-api-key": F.apiKey, "authorization": "Bearer " + token, "content-type": "application/json",
            ]
            if let userID { headers["userid"] = userID }
            #expect(fixture.call("POST", path, headers: headers, body: body).status == .accepted)
        }
        create(access, path: "/contacts", userID: nil)
        create(service, path: contacts, userID: user)
        create(service, path: contacts, userID: nil)
        create(service, path: contacts, userID: UUID().uuidString)
        #expect(try fixture.events().map(\.userID) == [user, user, nil, nil])
    }

    /// The schemas are not a formality: the old shapes and a few plausible mistakes fail them.
    @Test func wrongBodiesFailTheSchemas() throws {
        let accountID = UUID().uuidString.lowercased()
        let matter: [String: Any] = [
            "id": UUID().uuidString.lowercased(), "externalSystemId": NSNull(), "number": "10001",
            "title": "10001 - Smith - Sale",
            "matterType": ["id": UUID().uuidString.lowercased(), "rel": "MatterTypes"],
            "clients": [["id": UUID().uuidString.lowercased(), "rel": "Contacts"]], "description": "Sale of Franchise",
            "status": "Open",
        ]
        let envelope: [String: Any] = [
            "accountId": accountID, "userId": UUID().uuidString.lowercased(),
            "subscriptionId": UUID().uuidString.lowercased(), "type": "matter.updated", "source": "API",
            "payload": matter, "timestamp": Int64(637_981_232_724_209_300),
        ]
        // FACTS.md's sample itself (with uuids) passes.
        #expect(Self.schemas.problems(envelope, schema: "notification.json") == [])
        #expect(Self.schemas.problems(matter, schema: "matter.json") == [])

        var oldMatter = matter
        oldMatter["matterType"] = nil
        oldMatter["matterTypeId"] = UUID().uuidString.lowercased()
        #expect(!Self.schemas.problems(oldMatter, schema: "matter.json").isEmpty)
        var hrefLinks = matter
        hrefLinks["clients"] = [["id": UUID().uuidString.lowercased(), "href": "https://x.test/contacts/1"]]
        #expect(!Self.schemas.problems(hrefLinks, schema: "matter.json").isEmpty)
        var stringTimestamp = envelope
        stringTimestamp["timestamp"] = "637981232724209300"
        #expect(!Self.schemas.problems(stringTimestamp, schema: "notification.json").isEmpty)
        var isoTimestamp = envelope
        isoTimestamp["timestamp"] = "2022-09-01T10:00:00Z"
        #expect(!Self.schemas.problems(isoTimestamp, schema: "notification.json").isEmpty)
        var extra = envelope
        extra["clientId"] = "casehug"
        #expect(!Self.schemas.problems(extra, schema: "notification.json").isEmpty)
        var noAccount = envelope
        noAccount["accountId"] = nil
        #expect(!Self.schemas.problems(noAccount, schema: "notification.json").isEmpty)
        let oldError: [String: Any] = [
            "resource": "matter", "id": UUID().uuidString.lowercased(), "operation": "create", "reason": "x",
        ]
        #expect(!Self.schemas.problems(oldError, schema: "error.json").isEmpty)
        let upperCaseName: [String: Any] = [
            "message": "x", "resourceName": "Matter", "resourceId": UUID().uuidString.lowercased(),
        ]
        #expect(!Self.schemas.problems(upperCaseName, schema: "error.json").isEmpty)
        #expect(!Self.schemas.problems(["id": UUID().uuidString.lowercased()], schema: "noop.json").isEmpty)
    }

    /// The resource payload schemas only name properties the spec's schemas have (Matter,
    /// Contact, Memo), so "the GET representation" means the spec's, not the sandbox's own.
    @Test(arguments: [("matter.json", "Matter"), ("contact.json", "Contact"), ("memo.json", "Memo")])
    func payloadSchemasNameOnlyTheSpecsProperties(file: String, specSchema: String) throws {
        let root = try #require(Bundle.module.resourceURL).appendingPathComponent("Fixtures")
        func properties(_ object: Any?) -> Set<String> {
            Set(((object as? [String: Any])?["properties"] as? [String: Any] ?? [:]).keys)
        }
        let payload = try JSONSerialization.jsonObject(
            with: Data(contentsOf: root.appendingPathComponent("webhook-schemas/\(file)")))
        let spec = try JSONSerialization.jsonObject(
            with: Data(contentsOf: root.appendingPathComponent("smokeball-swagger.json")))
        let schema = (((spec as? [String: Any])?["components"] as? [String: Any])?["schemas"] as? [String: Any])?[
            specSchema]
        let declared = properties(payload)
        #expect(!declared.isEmpty)
        #expect(declared.subtracting(properties(schema)) == [])
    }
}
