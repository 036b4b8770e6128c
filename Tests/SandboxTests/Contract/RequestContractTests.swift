import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// Write bodies against the spec's request DTOs: the sandbox's shapes name exactly the spec's
/// properties with the spec's types, a body the spec refuses (unknown property, wrong type, null
/// array item) is a 400 ProblemDetails that stores nothing, and a body it allows is accepted.
@Suite struct RequestContractTests {
    typealias F = SandboxFixture

    static let spec = OpenAPIValidator.smokeball

    /// The spec's `components.schemas`, as JSON.
    static func loadSchemas() -> [String: Any] {
        guard let url = Bundle.module.url(forResource: "Fixtures/smokeball-swagger", withExtension: "json"),
            let data = try? Data(contentsOf: url),
            let spec = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let schemas = (spec["components"] as? [String: Any])?["schemas"] as? [String: Any]
        else { return [:] }
        return schemas
    }

    // MARK: The shapes are the spec's

    /// The schema a property refers to (`$ref` or `allOf: [$ref]`), if any.
    static func reference(_ schema: [String: Any]) -> String? {
        let ref = schema["$ref"] as? String ?? ((schema["allOf"] as? [[String: Any]])?.first?["$ref"] as? String)
        return ref.map { String($0.split(separator: "/").last ?? "") }
    }

    /// Where `shape` differs from the spec's `schema`: property names, JSON types, nullability.
    static func differences(
        _ shape: BodyShape, _ schema: [String: Any], at path: String, seen: Set<String>, in schemas: [String: Any]
    ) -> [String] {
        if let name = reference(schema), let target = schemas[name] as? [String: Any] {
            if target["enum"] != nil {
                if case .managedBy = shape { return [] }
                return ["\(path): \(name) is an enum"]
            }
            // A DTO that contains itself is compared once.
            if seen.contains(name) { return [] }
            return differences(shape, target, at: path, seen: seen.union([name]), in: schemas)
        }
        let nullable = schema["nullable"] as? Bool ?? false
        switch (shape, schema["type"] as? String, schema["format"] as? String) {
        case (.recursive(let inner), _, _):
            return differences(inner(), schema, at: path, seen: seen, in: schemas)
        case (.string, "string", nil), (.dateTime, "string", "date-time"), (.number, "number", _),
            (.boolean, "boolean", _) where nullable, (.flag, "boolean", _) where !nullable,
            (.integer, "integer", _) where !nullable:
            return []
        case (.list(let element), "array", _):
            return differences(
                element, schema["items"] as? [String: Any] ?? [:], at: path + "[]", seen: seen, in: schemas)
        case (.map(let element), "object", _):
            guard let values = schema["additionalProperties"] as? [String: Any] else {
                return ["\(path): the spec's object has no value schema"]
            }
            if case .any = element { return values.keys.allSatisfy { $0 == "nullable" } ? [] : ["\(path): not any"] }
            return differences(element, values, at: path + "{}", seen: seen, in: schemas)
        case (.object(let properties), "object", _):
            let specified = schema["properties"] as? [String: [String: Any]] ?? [:]
            guard schema["additionalProperties"] as? Bool == false else { return ["\(path): the spec allows more"] }
            var found = Set(properties.keys).symmetricDifference(specified.keys).sorted().map {
                "\(path).\($0): only in \(properties[$0] == nil ? "the spec" : "the sandbox")"
            }
            for (name, member) in properties.sorted(by: { $0.key < $1.key }) {
                guard let specifiedMember = specified[name] else { continue }
                found += differences(member, specifiedMember, at: "\(path).\(name)", seen: seen, in: schemas)
            }
            return found
        default:
            return ["\(path): \(shape) is not \(schema["type"] ?? "untyped") \(schema["format"] ?? "")"]
        }
    }

    @Test(arguments: [
        ("MatterDto", BodyShape.object(BodyShape.matter)), ("MatterDto2", .object(BodyShape.matterPatch)),
        ("AddFileDto", .object(BodyShape.addFile)), ("FolderDto", .object(BodyShape.folder)),
        ("MemoDto", .object(BodyShape.memo)), ("WebhookSubscriptionDto", .object(Webhooks.dto)),
        ("ContactsBatchRequest", .object(Contacts.batchRequest)), ("PersonDto", BodyShape.person),
        ("CompanyDto", BodyShape.company), ("TrustDto", BodyShape.trust), ("GroupOfPeopleDto", BodyShape.groupOfPeople),
    ])
    func eachBodyShapeIsTheSpecsDTO(name: String, shape: BodyShape) throws {
        let schemas = Self.loadSchemas()
        let schema = try #require(schemas[name] as? [String: Any])
        #expect(Self.differences(shape, schema, at: name, seen: [name], in: schemas) == [])
    }

    // MARK: Over HTTP

    struct Setup {
        let fixture: F
        let access: String
        /// `{MATTER}`, `{WEBHOOK}`, `{TYPE}` and `{CLIENT}`: ids the bodies and paths refer to.
        let placeholders: [String: String]

        func fill(_ text: String) -> String {
            placeholders.reduce(text) { $0.replacingOccurrences(of: $1.key, with: $1.value) }
        }

        /// Every table a write can change, as text.
        func state() throws -> String {
            let connection = try Connection(url: fixture.databaseURL)
            return try [
                "sb_matters", "sb_contacts", "sb_files", "sb_folders", "sb_memos", "sb_webhook_subscriptions",
                "sb_events", "sb_pending_updates",
            ].map { table in
                try connection.execute(
                    "SELECT coalesce(string_agg(t::text, ',' ORDER BY t::text), '') AS s FROM \(table) t"
                )
                .single().string("s")
            }.joined(separator: "|")
        }
    }

    static func setUp() throws -> Setup {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let hook = fixture.write(
            "POST", "/webhooks", token: access,
            body: F.jsonBytes(["eventTypes": ["matter.created"], "eventNotificationUrl": "https://hooks.test/in"]),
            requestID: "setup")
        #expect(hook.status == .ok, "\(F.text(hook))")
        return Setup(
            fixture: fixture, access: access,
            placeholders: [
                "{MATTER}": try DocumentsTests.matter(fixture),
                "{WEBHOOK}": try #require(F.json(hook)["id"] as? String),
                "{TYPE}": try MattersTests.matterType(fixture, "Divorce"),
                "{CLIENT}": try MattersTests.contact(fixture, "Avery Smith"),
            ])
    }

    /// The spec's problems with `body` as the DTO `schema` (each item of an array body).
    static func specProblems(_ body: Any, schema: String) -> [String] {
        (body as? [Any] ?? [body]).flatMap { spec.problems($0, schema: schema) }
    }

    static let matterBody = #""matterTypeId": "{TYPE}", "status": "Open", "clientIds": ["{CLIENT}"]"#

    @Test(arguments: [
        (
            "POST", "/matters", #"{\#(matterBody), "matterName": "X"}"#, "MatterDto",
            "matterName is not a property of MatterDto"
        ),
        ("POST", "/matters", #"{\#(matterBody), "items": {}}"#, "MatterDto", "items is not a property of MatterDto"),
        ("POST", "/matters", #"{\#(matterBody), "dateOpened": "2024-05-01"}"#, "MatterDto", "dateOpened is not"),
        (
            "POST", "/matters", #"{"matterTypeId": "{TYPE}", "status": "Open", "clientIds": [null]}"#, "MatterDto",
            "clientIds[0] must not be null"
        ),
        (
            "POST", "/matters", #"{\#(matterBody), "referralAgreementFee": "ten"}"#, "MatterDto",
            "referralAgreementFee must be a number"
        ),
        (
            "POST", "/matters", #"{\#(matterBody), "originatingStaffIds": ["a", 2]}"#, "MatterDto",
            "originatingStaffIds[1] must be a string"
        ),
        ("PUT", "/matters/{MATTER}", #"{"items": {"roles": []}}"#, "MatterDto", "items is not a property of MatterDto"),
        (
            "PATCH", "/matters/{MATTER}", #"{"otherSideRole": "Respondent"}"#, "MatterDto2",
            "otherSideRole is not a property of MatterDto2"
        ),
        (
            "PATCH", "/matters/{MATTER}", #"{"status": "Closed", "colour": "red"}"#, "MatterDto2",
            "colour is not a property"
        ),
        (
            "PATCH", "/matters/{MATTER}", #"{"splitOriginatingStaffSettings": {"isEnabled": true, "ratio": 1}}"#,
            "MatterDto2",
            "splitOriginatingStaffSettings.ratio is not a known property"
        ),
        (
            "PATCH", "/matters/{MATTER}", #"{"splitOriginatingStaffSettings": {"isEnabled": null}}"#, "MatterDto2",
            "splitOriginatingStaffSettings.isEnabled must be true or false"
        ),
        (
            "PATCH", "/matters/{MATTER}",
            #"{"splitOriginatingStaffSettings": {"splitMatterStaffs": [{"matterStaffRatio": 1.5}]}}"#,
            "MatterDto2", "matterStaffRatio must be an integer"
        ),
        (
            "PATCH", "/matters/{MATTER}", #"{"items": {"roles": [{"bogus": 1}]}}"#, "MatterDto2",
            "items.roles[0].bogus is not"
        ),
        (
            "PATCH", "/matters/{MATTER}", #"{"items": {"roles": [{"subItems": {"x": [{"contact": {"name": "A"}}]}}]}}"#,
            "MatterDto2", "contact.name is not a known property"
        ),
        (
            "POST", "/matters/{MATTER}/documents/files", #"{"fileName": "a.pdf", "name": "a.pdf"}"#, "AddFileDto",
            "name is not a property of AddFileDto"
        ),
        (
            "POST", "/matters/{MATTER}/documents/files", #"{"fileName": "a.pdf", "dateCreated": "soon"}"#, "AddFileDto",
            "dateCreated must be an ISO 8601 date-time"
        ),
        (
            "POST", "/matters/{MATTER}/documents/files", #"{"fileName": "a.pdf", "fileAdditionalData": []}"#,
            "AddFileDto",
            "fileAdditionalData must be an object"
        ),
        (
            "POST", "/matters/{MATTER}/documents/files", #"{"fileName": "a.pdf", "userId": 7}"#, "AddFileDto",
            "userId must be a string"
        ),
        (
            "POST", "/matters/{MATTER}/documents/files/bulk",
            #"[{"fileName": "a.pdf"}, {"fileName": "b.pdf", "size": 3}]"#,
            "AddFileDto", "[1].size is not a known property"
        ),
        (
            "POST", "/matters/{MATTER}/documents/folders", #"{"name": "Pleadings", "colour": "red"}"#, "FolderDto",
            "colour is not a property of FolderDto"
        ),
        (
            "POST", "/matters/{MATTER}/documents/folders", #"{"name": "Pleadings", "parentFolderId": 5}"#, "FolderDto",
            "parentFolderId must be a string"
        ),
        (
            "POST", "/matters/{MATTER}/memos", #"{"title": "T", "text": "x", "body": "y"}"#, "MemoDto",
            "body is not a property of MemoDto"
        ),
        (
            "POST", "/matters/{MATTER}/memos", #"{"title": "T", "text": "x", "createdDateUtc": "yesterday"}"#,
            "MemoDto",
            "createdDateUtc must be an ISO 8601 date-time"
        ),
        (
            "POST", "/webhooks",
            #"{"eventTypes": ["matter.created"], "eventNotificationUrl": "https://h.test", "url": "x"}"#,
            "WebhookSubscriptionDto", "url is not a property of WebhookSubscriptionDto"
        ),
        (
            "POST", "/webhooks", #"{"eventTypes": ["matter.created", null], "eventNotificationUrl": "https://h.test"}"#,
            "WebhookSubscriptionDto", "eventTypes[1] must not be null"
        ),
        ("PUT", "/webhooks/{WEBHOOK}", #"{"secret": "s3cret"}"#, "WebhookSubscriptionDto", "secret is not a property"),
        (
            "POST", "/contacts/batch", #"{"ids": [], "more": true}"#, "ContactsBatchRequest",
            "more is not a property of ContactsBatchRequest"
        ),
        ("POST", "/contacts/batch", #"{"ids": [null]}"#, "ContactsBatchRequest", "ids[0] must not be null"),
        (
            "POST", "/contacts", #"{"company": {"name": "C", "staffIds": [null]}}"#, "ContactDto",
            "company.staffIds[0] must not be null"
        ),
        (
            "POST", "/contacts", #"{"trust": {"name": "T", "trustees": [null]}}"#, "ContactDto",
            "trust.trustees[0] must not be null"
        ),
    ])
    func bodiesTheSpecRefusesAreBadRequestsThatStoreNothing(
        method: String, path: String, body: String, schema: String, detail: String
    ) throws {
        let setup = try Self.setUp()
        let json = setup.fill(body)
        #expect(Self.specProblems(try JSONSerialization.jsonObject(with: Data(json.utf8)), schema: schema) != [])
        let before = try setup.state()
        let response = setup.fixture.write(
            method, setup.fill(path), token: setup.access, body: Array(json.utf8), requestID: "refused")
        #expect(response.status == .badRequest, "\(F.text(response))")
        #expect(response.header("Content-Type") == "application/problem+json")
        let problem = try JSONSerialization.jsonObject(with: Data(response.body))
        #expect(Self.spec.problems(problem, schema: "ProblemDetails") == [])
        #expect(F.json(response)["status"] as? Int == 400)
        #expect((F.json(response)["detail"] as? String)?.contains(detail) == true, "\(F.text(response))")
        #expect(try setup.state() == before)
    }

    @Test(arguments: [
        (
            "POST", "/matters",
            #"{\#(matterBody), "referralAgreementFee": 12.5, "otherSideRole": null,"#
                + #" "splitOriginatingStaffSettings": {"isEnabled": true, "splitMethod": null,"#
                + #" "splitMatterStaffs": [{"matterStaffId": "s-1", "matterStaffRatio": 50}]}}"#, "MatterDto", 202
        ),
        (
            "PATCH", "/matters/{MATTER}",
            #"{"dateOpened": "2024-05-01T09:00:00Z", "Description": "Renamed","#
                + #" "items": {"roles": [{"description": "x", "subItems": {"a": [{"id": null, "contact": {"id": "c"}}]}}]}}"#,
            "MatterDto2", 202
        ),
        (
            "POST", "/matters/{MATTER}/documents/files",
            #"{"FileName": "a.pdf", "userId": "u-1", "folderId": null,"#
                + #" "dateCreated": "2024-05-01T09:00:00Z", "dateModified": null, "fileAdditionalData": {"k": null, "n": 1}}"#,
            "AddFileDto", 202
        ),
        (
            "POST", "/matters/{MATTER}/documents/folders",
            #"{"Name": "Pleadings", "parentFolderId": null, "userId": "u-1"}"#,
            "FolderDto", 202
        ),
        (
            "POST", "/matters/{MATTER}/memos",
            #"{"title": "T", "text": "x", "userId": null, "createdDateUtc": "2024-05-01T09:00:00Z"}"#,
            "MemoDto", 202
        ),
        (
            "POST", "/webhooks",
            #"{"Name": "CaseHug", "EventTypes": ["matter.created"], "eventNotificationUrl": "https://h.test","#
                + #" "key": null}"#, "WebhookSubscriptionDto", 200
        ),
    ])
    func bodiesTheSpecAllowsAreAccepted(method: String, path: String, body: String, schema: String, status: Int) throws
    {
        let setup = try Self.setUp()
        let json = setup.fill(body)
        // The spec's names are camelCase; a capitalised one (which ASP.NET binds too) is checked as spelled there.
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let spelled = Dictionary(
            uniqueKeysWithValues: object.map { ($0.key.prefix(1).lowercased() + $0.key.dropFirst(), $0.value) })
        #expect(Self.specProblems(spelled, schema: schema) == [])
        let response = setup.fixture.write(
            method, setup.fill(path), token: setup.access, body: Array(json.utf8), requestID: "allowed")
        #expect(response.status.code == status, "\(F.text(response))")
        // Names bind without regard to case: the capitalised ones took effect.
        if schema == "WebhookSubscriptionDto" { #expect(F.json(response)["name"] as? String == "CaseHug") }
        if schema == "FolderDto" {
            let stored = try Connection(url: setup.fixture.databaseURL).execute("SELECT name FROM sb_folders").rows
            #expect(try stored.map { try $0.string("name") } == ["Pleadings"])
        }
    }
}
