import Basics
import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// `/contacts`: writes answered 202 and readable after the partner's write delay, one event per
/// change, Smokeball's Search/UpdatedSince/Type filters and paging, batch reads, the spec's
/// shapes, and the admin seed and firm-user edit.
@Suite struct ContactsTests {
    typealias F = SandboxFixture

    static let spec = OpenAPIValidator.smokeball

    // MARK: Helpers

    static func fixture(writeDelayMilliseconds: Int = 0) throws -> (F, String) {
        let fixture = try F(rate: 1000, burst: 1000)
        if writeDelayMilliseconds > 0 {
            let client = fixture.admin(
                "POST", "/_sandbox/clients",
                [
                    "client_id": F.clientID, "client_secret": F.clientSecret, "api_key": F.apiKey,
                    "redirect_uris": [F.redirectURI], "rate_per_second": 1000, "burst": 1000,
                    "write_delay_ms": writeDelayMilliseconds,
                ])
            #expect(client.status.code == 201)
        }
        return (fixture, fixture.connect().access)
    }

    static func send(
        _ fixture: F, _ method: String, _ path: String, _ token: String, body: [UInt8],
        requestID: String = "contact-req"
    ) -> Response {
        fixture.write(method, path, token: token, body: body, requestID: requestID)
    }

    static func send(
        _ fixture: F, _ method: String, _ path: String, _ token: String, _ object: Any,
        requestID: String = "contact-req"
    ) -> Response {
        fixture.write(method, path, token: token, body: F.jsonBytes(object), requestID: requestID)
    }

    /// GET /contacts with query items that may repeat (`Search=a&Search=b`), which the fixture's
    /// dictionary-based `call` cannot express.
    static func list(_ fixture: F, _ token: String, _ items: [(String, String)]) -> Response {
        let queryString = items.map { PercentEncoding.encode($0.0) + "=" + PercentEncoding.encode($0.1) }
            .joined(separator: "&")
        let request = Request(
            method: "GET", path: "/contacts", query: Dictionary(items, uniquingKeysWith: { $1 }),
            queryString: queryString,
            headers: ["host": "sandbox.test", "x-api-key": F.apiKey, "authorization": "Bearer " + token],
            remoteAddress: "127.0.0.1", requestID: "test")
        return respond(to: request, with: fixture.handler, log: Logger(route: "sandbox-test")).0
    }

    static func page(_ fixture: F, _ token: String, _ items: [(String, String)]) -> [String: Any] {
        let response = list(fixture, token, items)
        #expect(response.status == .ok)
        return F.json(response)
    }

    static func items(_ page: [String: Any]) -> [[String: Any]] { page["value"] as? [[String: Any]] ?? [] }

    static func displayName(_ contact: [String: Any]) -> String {
        if let person = contact["person"] as? [String: Any] {
            return [person["firstName"], person["lastName"]].compactMap { $0 as? String }.joined(separator: " ")
        }
        return (contact["company"] as? [String: Any])?["name"] as? String ?? ""
    }

    static func create(_ fixture: F, _ token: String, _ body: [String: Any], requestID: String = "contact-req")
        throws -> String
    {
        let response = send(fixture, "POST", "/contacts", token, body, requestID: requestID)
        #expect(response.status == .accepted)
        return try #require(F.json(response)["id"] as? String)
    }

    static func person(_ first: String, _ last: String, email: String? = nil, phone: String? = nil) -> [String: Any] {
        var person: [String: Any] = ["firstName": first, "lastName": last]
        if let email { person["email"] = email }
        if let phone { person["phone"] = ["number": phone] }
        return ["person": person]
    }

    typealias Event = SandboxFixture.RecordedEvent

    static func events(_ fixture: F) throws -> [Event] { try fixture.events() }

    static func count(_ fixture: F, _ sql: String, _ parameters: [any SQLValueConvertible] = []) throws -> Int64 {
        try Connection(url: fixture.databaseURL).execute(sql, parameters).single().int("n")
    }

    static func seed(_ fixture: F, _ count: Int, account: UUID? = nil) -> Response {
        fixture.admin(
            "POST", "/_sandbox/accounts/\((account ?? fixture.accountID).uuidString.lowercased())/contacts/seed",
            ["count": count])
    }

    static func body(_ response: Response) throws -> Any { try JSONSerialization.jsonObject(with: Data(response.body)) }

    // MARK: Writes and eventual consistency

    @Test func aCreatedContactIsReadableOnlyAfterTheWriteDelay() throws {
        let (fixture, access) = try Self.fixture(writeDelayMilliseconds: 2000)
        let before = DotNetTicks.from(fixture.now)
        let created = Self.send(
            fixture, "POST", "/contacts", access,
            [
                "person": [
                    "firstName": "Ada", "lastName": "Lovelace", "email": "ada@analytical.example",
                    "phone": ["number": "(555) 010-0001"],
                ],
                "externalSystemId": "casehug-client-42",
            ], requestID: "create-ada")
        #expect(created.status == .accepted)
        let link = try Self.body(created)
        #expect(Self.spec.problems(link, path: "/contacts", method: "post", status: 202) == [])
        #expect(Self.spec.problems(link, schema: "Link") == [])
        let id = try #require(F.json(created)["id"] as? String)
        #expect(F.json(created)["href"] as? String == "http://sandbox.test/contacts/\(id)")
        #expect(created.header("Location") == "http://sandbox.test/contacts/\(id)")
        #expect(created.header("RequestId") == "create-ada")

        let early = fixture.api("GET", "/contacts/\(id)", token: access)
        #expect(early.status == .notFound)
        #expect(Self.spec.problems(try Self.body(early), path: "/contacts/{id}", method: "get", status: 404) == [])
        #expect(Self.page(fixture, access, [])["size"] as? Int == 0)

        fixture.advance(by: 2.5)
        let read = fixture.api("GET", "/contacts/\(id)", token: access)
        #expect(read.status == .ok)
        let contact = try Self.body(read)
        #expect(Self.spec.problems(contact, path: "/contacts/{id}", method: "get", status: 200) == [])
        let fields = contact as? [String: Any] ?? [:]
        #expect(fields["id"] as? String == id)
        #expect(fields["href"] as? String == "http://sandbox.test/contacts/\(id)")
        #expect(fields["externalSystemId"] as? String == "casehug-client-42")
        #expect(fields["isDeleted"] as? Bool == false)
        #expect(fields["company"] == nil)
        let person = try #require(fields["person"] as? [String: Any])
        #expect(person["firstName"] as? String == "Ada")
        #expect(person["email"] as? String == "ada@analytical.example")
        #expect((person["phone"] as? [String: Any])?["number"] as? String == "(555) 010-0001")
        // lastUpdated is when the write was applied: the end of the 2 s delay.
        let lastUpdated = try #require(
            fields["lastUpdated"] as? Int64 ?? (fields["lastUpdated"] as? Int).map(Int64.init))
        #expect(lastUpdated >= before + 20_000_000)
        #expect(lastUpdated < before + 25_000_000)
        #expect(Self.page(fixture, access, [])["size"] as? Int == 1)

        let events = try Self.events(fixture)
        #expect(events.map(\.type) == ["contact.created"])
        #expect(events.first?.requestID == "create-ada")
        #expect(events.first?.source == "API")
        #expect(events.first?.clientID == F.clientID)
        #expect(events.first?.payload["id"] as? String == id)
        #expect(events.first?.payload["versionId"] as? String == fields["versionId"] as? String)
        #expect(events.first?.payload["externalSystemId"] as? String == "casehug-client-42")
    }

    @Test(arguments: [
        ("[]", "JSON object"),
        ("not json", "JSON object"),
        ("{}", "one of person, company"),
        (#"{"externalSystemId": "X"}"#, "one of person, company"),
        (#"{"person": null, "company": null}"#, "one of person, company"),
        (#"{"person": "Ada Lovelace"}"#, "person must be an object"),
        (#"{"person": {"firstName": 7}}"#, "person.firstName must be a string"),
        (#"{"person": {"lastName": "L", "phone": {"number": 5550100}}}"#, "person.phone.number must be a string"),
        (#"{"person": {"lastName": "L"}, "company": {"name": "C"}}"#, "only one of"),
        (#"{"person": {"lastName": "L", "nickname": "x"}}"#, "person.nickname is not a known property"),
        (#"{"person": {"lastName": "L", "birthDate": "last tuesday"}}"#, "person.birthDate"),
        (#"{"person": {"lastName": "L"}, "isDeleted": "no"}"#, "isDeleted"),
        (#"{"person": {"lastName": "L"}, "externalSystemId": 12}"#, "externalSystemId must be a string"),
        (#"{"company": {"name": "C", "companyManagedBy": 3}}"#, "company.companyManagedBy"),
        (#"{"company": {"name": "C", "staffIds": "a,b"}}"#, "company.staffIds must be an array"),
        (#"{"person": {"lastName": "L"}, "contactType": "Person"}"#, "contactType is not a property"),
    ])
    func malformedBodiesAreRefusedAndNothingIsStored(body: String, detail: String) throws {
        let (fixture, access) = try Self.fixture()
        let response = Self.send(fixture, "POST", "/contacts", access, body: Array(body.utf8))
        #expect(response.status == .badRequest)
        let problem = try Self.body(response)
        #expect(Self.spec.problems(problem, path: "/contacts", method: "post", status: 400) == [])
        let text = F.json(response)["detail"] as? String ?? ""
        #expect(text.contains(detail), "\(text)")
        #expect(try Self.count(fixture, "SELECT count(*) AS n FROM sb_contacts") == 0)
        #expect(try Self.events(fixture).isEmpty)
    }

    @Test(
        arguments: [
            (
                ["person": ["firstName": "Ada", "lastName": "Lovelace", "email": "ada at analytical"]],
                "not a valid email"
            ),
            (["company": ["name": "Analytical Engines", "email": "info@analytical"]], "not a valid email"),
            (["person": ["email": "nameless@example.com"]], "firstName or lastName"),
            (["company": ["email": "info@example.com"]], "company.name"),
        ] as [([String: [String: String]], String)])
    func whatOnlyLaterProcessingRejectsIsAcceptedThenAnErrorEvent(body: [String: [String: String]], reason: String)
        throws
    {
        let (fixture, access) = try Self.fixture()
        let response = Self.send(fixture, "POST", "/contacts", access, body, requestID: "bad-email")
        #expect(response.status == .accepted)
        let id = try #require(F.json(response)["id"] as? String)
        #expect(try Self.count(fixture, "SELECT count(*) AS n FROM sb_contacts") == 0)
        #expect(fixture.api("GET", "/contacts/\(id)", token: access).status == .notFound)
        let events = try Self.events(fixture)
        #expect(events.map(\.type) == ["error"])
        #expect(events.first?.requestID == "bad-email")
        #expect(Set((events.first?.payload ?? [:]).keys) == ["message", "resourceName", "resourceId"])
        #expect(events.first?.payload["resourceName"] as? String == "contact")
        #expect(events.first?.payload["resourceId"] as? String == id)
        let message = events.first?.payload["message"] as? String ?? ""
        #expect(message.contains(reason), "\(message)")
    }

    @Test func updatesMergeBumpTheVersionAndDeletesMarkTheContact() throws {
        let (fixture, access) = try Self.fixture()
        let id = try Self.create(
            fixture, access, Self.person("Grace", "Hopper", email: "grace@navy.example", phone: "555-010-0002"))
        let original = F.json(fixture.api("GET", "/contacts/\(id)", token: access))
        fixture.advance(by: 1)

        let updated = Self.send(
            fixture, "PUT", "/contacts/\(id)", access,
            ["person": ["email": "grace.hopper@navy.example", "phone": NSNull(), "title": "RADM"]],
            requestID: "update-grace")
        #expect(updated.status == .accepted)
        #expect(Self.spec.problems(try Self.body(updated), path: "/contacts/{id}", method: "put", status: 202) == [])
        let after = F.json(fixture.api("GET", "/contacts/\(id)", token: access))
        let person = after["person"] as? [String: Any] ?? [:]
        #expect(person["firstName"] as? String == "Grace")
        #expect(person["email"] as? String == "grace.hopper@navy.example")
        #expect(person["title"] as? String == "RADM")
        #expect(person["phone"] == nil)
        #expect(after["versionId"] as? String != original["versionId"] as? String)
        #expect((after["lastUpdated"] as? Int ?? 0) > (original["lastUpdated"] as? Int ?? 0))

        // A person cannot become a company; an invalid email fails later and changes nothing.
        #expect(
            Self.send(fixture, "PUT", "/contacts/\(id)", access, ["company": ["name": "Navy"]]).status == .badRequest)
        let invalid = Self.send(fixture, "PUT", "/contacts/\(id)", access, ["person": ["email": "nope"]])
        #expect(invalid.status == .accepted)
        #expect(
            F.json(fixture.api("GET", "/contacts/\(id)", token: access))["versionId"] as? String
                == after["versionId"] as? String)

        let deleted = fixture.api("DELETE", "/contacts/\(id)", token: access, requestID: "delete-grace")
        #expect(deleted.status == .accepted)
        #expect(Self.spec.problems(try Self.body(deleted), path: "/contacts/{id}", method: "delete", status: 202) == [])
        #expect(F.json(fixture.api("GET", "/contacts/\(id)", token: access))["isDeleted"] as? Bool == true)
        #expect(Self.page(fixture, access, [("ExcludeDeletedContacts", "true")])["size"] as? Int == 0)
        #expect(Self.page(fixture, access, [("ExcludeDeletedContacts", "false")])["size"] as? Int == 1)
        // Deleting again changes nothing and records nothing.
        #expect(fixture.api("DELETE", "/contacts/\(id)", token: access).status == .accepted)
        let restored = Self.send(fixture, "PUT", "/contacts/\(id)", access, ["isDeleted": false])
        #expect(restored.status == .accepted)
        #expect(F.json(fixture.api("GET", "/contacts/\(id)", token: access))["isDeleted"] as? Bool == false)

        let events = try Self.events(fixture)
        #expect(
            events.map(\.type) == ["contact.created", "contact.updated", "error", "contact.deleted", "contact.updated"])
        #expect(
            events.map(\.requestID) == ["contact-req", "update-grace", "contact-req", "delete-grace", "contact-req"])
        #expect(events[1].payload["versionId"] as? String == after["versionId"] as? String)
        #expect(events[2].payload["resourceId"] as? String == id)

        let missing = UUID().uuidString.lowercased()
        #expect(Self.send(fixture, "PUT", "/contacts/\(missing)", access, ["isDeleted": true]).status == .notFound)
        #expect(fixture.api("DELETE", "/contacts/\(missing)", token: access).status == .notFound)
        #expect(fixture.api("GET", "/contacts/not-a-uuid", token: access).status == .notFound)
        #expect(fixture.api("PATCH", "/contacts", token: access).status == .methodNotAllowed)
    }

    // MARK: Reading

    /// A contact with most of what ContactDto allows, so rendering is checked against `Contact`.
    static var company: [String: Any] {
        [
            "company": [
                "name": "Analytical Engines LLC", "type": "Limited Liability Company",
                "email": "info@analytical.example",
                "phone": ["areaCode": "555", "number": "010-0009"], "website": "https://analytical.example",
                "businessAddress": [
                    "addressLine1": "1 Engine Row", "city": "Springfield", "state": "IL", "zipCode": "62701",
                    "dxAddress": ["number": "12", "exchange": "SPR"],
                ],
                "registeredDate": "2001-02-03", "firmIsRegisteredAgent": false, "companyManagedBy": 1,
                "staffIds": [UUID().uuidString.lowercased()], "directorIds": [UUID().uuidString.lowercased()],
                "executionOptions": ["person1": ["name": "Ada Lovelace", "address": ["city": "London"]]],
            ],
            "externalSystemId": "casehug-org-7",
        ]
    }

    static var fullPerson: [String: Any] {
        [
            "person": [
                "title": "Dr", "firstName": "Alan", "middleName": "Mathison", "lastName": "Turing",
                "email": "alan@bletchley.example", "phone": ["number": "5550100003"],
                "phone2": ["number": "5550100004", "extension": "12"], "cell": ["number": "5550100005"],
                "birthDate": "1912-06-23T00:00:00Z",
                "residentialAddress": ["addressLine1": "2 Hut Lane", "country": "UK"],
                "passportDetails": ["passportNumber": "P123", "passportIssueDate": "2020-01-01T00:00:00.000Z"],
                "deathDetails": ["isDeathDateUnknown": false, "deathDate": "1954-06-07"],
                "identificationDetails": ["driversLicenseNumber": "D1"],
                "citizenshipDetails": ["nationality": "British"],
            ]
        ]
    }

    @Test(arguments: [
        [], [("Limit", "5")], [("Offset", "10"), ("Limit", "10")], [("Type", "Organisation")],
        [("Type", "Person"), ("Type", "trust")], [("Search", "name:a*")], [("Fields", "passportDetails,deathDetails")],
        [("UpdatedSince", "0"), ("ExcludeDeletedContacts", "true")], [("Sort", "lastUpdated desc")],
        [("Search", "email:nobody@nowhere.example")],
    ])
    func listsAndContactsMatchTheSpec(query: [(String, String)]) throws {
        let (fixture, access) = try Self.fixture()
        #expect(Self.seed(fixture, 25).status.code == 201)
        let companyID = try Self.create(fixture, access, Self.company)
        let personID = try Self.create(fixture, access, Self.fullPerson)
        let trustID = try Self.create(
            fixture, access, ["trust": ["name": "Lovelace Family Trust", "trustees": [["name": "Ada"]]]])
        let response = Self.list(fixture, access, query)
        #expect(response.status == .ok)
        let page = try Self.body(response)
        #expect(Self.spec.problems(page, path: "/contacts", method: "get", status: 200) == [])
        #expect(!Self.items(page as? [String: Any] ?? [:]).isEmpty || query.contains { $0.1.contains("nobody") })
        for id in [companyID, personID, trustID] {
            let contact = try Self.body(fixture.api("GET", "/contacts/\(id)", token: access))
            #expect(Self.spec.problems(contact, path: "/contacts/{id}", method: "get", status: 200) == [])
        }
    }

    @Test func contactsRenderAsTheSpecDescribes() throws {
        let (fixture, access) = try Self.fixture()
        let companyID = try Self.create(fixture, access, Self.company)
        let personID = try Self.create(fixture, access, Self.fullPerson)
        let company = F.json(fixture.api("GET", "/contacts/\(companyID)", token: access))
        let details = company["company"] as? [String: Any] ?? [:]
        #expect(details["companyManagedBy"] as? String == "Managers")
        #expect(details["registeredDate"] as? String == "2001-02-03T00:00:00Z")
        #expect((details["directors"] as? [[String: Any]])?.count == 1)
        #expect(details["directorIds"] == nil)
        #expect(company["externalSystemId"] as? String == "casehug-org-7")

        let person = F.json(fixture.api("GET", "/contacts/\(personID)", token: access))["person"] as? [String: Any]
        #expect(person?["birthDate"] as? String == "1912-06-23T00:00:00Z")
        #expect(person?["identificationDetails"] == nil)
        #expect((person?["passportDetails"] as? [String: Any])?["passportNumber"] as? String == "P123")
        // A list leaves the detail groups out unless Fields names them.
        let listed = Self.items(Self.page(fixture, access, [("Type", "Person")])).first?["person"] as? [String: Any]
        #expect(listed?["passportDetails"] == nil)
        #expect(listed?["firstName"] as? String == "Alan")
        let expanded = Self.items(Self.page(fixture, access, [("Type", "Person"), ("Fields", "passportDetails")]))
        #expect(((expanded.first?["person"] as? [String: Any])?["passportDetails"] as? [String: Any]) != nil)
        #expect(((expanded.first?["person"] as? [String: Any])?["deathDetails"] as? [String: Any]) == nil)
    }

    static func searchFixture() throws -> (F, String) {
        let (fixture, access) = try Self.fixture()
        _ = try Self.create(
            fixture, access, Self.person("Ada", "Lovelace", email: "ada@analytical.example", phone: "(555) 010-0001"))
        _ = try Self.create(
            fixture, access, Self.person("Grace", "Hopper", email: "grace@navy.example", phone: "555-010-0002"))
        _ = try Self.create(
            fixture, access, Self.person("Alan", "Turing", email: "alan@bletchley.example", phone: "5550100003"))
        _ = try Self.create(
            fixture, access,
            ["company": ["name": "Analytical Engines LLC", "email": "info@analytical.example"]])
        return (fixture, access)
    }

    @Test(arguments: [
        (["email:ada@analytical.example"], ["Ada Lovelace"]),
        (["EMAIL:ADA@Analytical.Example"], ["Ada Lovelace"]),
        (["email:*@analytical.example"], ["Ada Lovelace", "Analytical Engines LLC"]),
        (["email:!*@analytical.example"], ["Alan Turing", "Grace Hopper"]),
        (["name:a*"], ["Ada Lovelace", "Alan Turing", "Analytical Engines LLC"]),
        (["name:!a*"], ["Grace Hopper"]),
        (["name:ada"], []),
        (["name:Ada Lovelace"], ["Ada Lovelace"]),
        (["name:>g"], ["Grace Hopper"]),
        (["name:>=grace hopper"], ["Grace Hopper"]),
        (["name:<alan"], ["Ada Lovelace"]),
        (["name:<=alan turing"], ["Ada Lovelace", "Alan Turing"]),
        (["phone:555-010-0002"], ["Grace Hopper"]),
        (["phone:*0003"], ["Alan Turing"]),
        (["name:a*", "email:*@analytical.example"], ["Ada Lovelace", "Analytical Engines LLC"]),
        (["name:*an*", "name:!*engines*"], ["Alan Turing"]),
        (["name:50%*"], []),
    ])
    func searchTermsFilterAndCombine(terms: [String], names: [String]) throws {
        let (fixture, access) = try Self.searchFixture()
        let response = Self.list(fixture, access, terms.map { ("Search", $0) })
        #expect(response.status == .ok)
        let page = F.json(response)
        #expect(Self.items(page).map(Self.displayName).sorted() == names)
        #expect(page["size"] as? Int == names.count)
        // Both terms survive on the paging links.
        let href = (page["self"] as? [String: Any])?["href"] as? String ?? ""
        #expect(href.components(separatedBy: "Search=").count - 1 == terms.count)
    }

    @Test(arguments: [
        [("Search", "nameada")], [("Search", "nickname:ada")], [("Search", "name:")], [("Search", "name:>a*")],
        [("Search", ":ada")], [("Search", "phone:call-me")], [("UpdatedSince", "yesterday")],
        [("UpdatedSince", "-1")], [("Type", "Robot")], [("ExcludeDeletedContacts", "maybe")], [("Sort", "name")],
        [("Limit", "501")], [("Offset", "-1")],
    ])
    func malformedQueriesAreBadRequests(query: [(String, String)]) throws {
        let (fixture, access) = try Self.fixture()
        let response = Self.list(fixture, access, query)
        #expect(response.status == .badRequest)
        #expect(Self.spec.problems(try Self.body(response), schema: "ProblemDetails") == [])
        #expect(F.json(response)["status"] as? Int == 400)
    }

    @Test func updatedSinceTakesTicksAndReturnsOnlyLaterChanges() throws {
        let (fixture, access) = try Self.fixture()
        let first = try Self.create(fixture, access, Self.person("Ada", "Lovelace"))
        fixture.advance(by: 1)
        let boundary = DotNetTicks.from(fixture.now)
        fixture.advance(by: 1)
        let second = try Self.create(fixture, access, Self.person("Grace", "Hopper"))
        func ids(_ since: Int64) -> [String] {
            Self.items(Self.page(fixture, access, [("UpdatedSince", String(since))])).compactMap { $0["id"] as? String }
        }
        #expect(ids(0) == [first, second])
        #expect(ids(boundary) == [second])
        let all = Self.items(Self.page(fixture, access, []))
        let ticks = all.map { ($0["lastUpdated"] as? NSNumber)?.int64Value ?? 0 }
        // Strictly after: a contact's own lastUpdated excludes it, one tick less includes it.
        #expect(ids(ticks[0]) == [second])
        #expect(ids(ticks[0] - 1) == [first, second])
        #expect(ids(ticks[1]) == [])
        // Updating the first contact moves it after the second.
        fixture.advance(by: 1)
        #expect(
            Self.send(fixture, "PUT", "/contacts/\(first)", access, ["person": ["middleName": "King"]]).status
                == .accepted)
        #expect(ids(ticks[1]) == [first])
        #expect(ids(0) == [second, first])
    }

    @Test func pagesWalkEveryContactExactlyOnce() throws {
        let (fixture, access) = try Self.fixture()
        #expect(Self.seed(fixture, 1234).status.code == 201)
        var seen: [String] = []
        var offset = 0
        while true {
            let page = Self.page(fixture, access, [("Offset", String(offset)), ("Limit", "100")])
            #expect(page["size"] as? Int == 1234)
            #expect(page["offset"] as? Int == offset)
            let items = Self.items(page)
            seen += items.compactMap { $0["id"] as? String }
            let next = page["next"] as? [String: Any]
            guard let href = next?["href"] as? String else { break }
            #expect(href.contains("offset=\(offset + 100)"))
            offset += 100
        }
        #expect(seen.count == 1234)
        #expect(Set(seen).count == 1234)
        #expect(offset == 1200)
        let descending = Self.items(Self.page(fixture, access, [("Sort", "-lastUpdated"), ("Limit", "3")]))
        #expect(descending.compactMap { $0["id"] as? String } == Array(seen.suffix(3).reversed()))
    }

    @Test func anotherAccountsContactsAreInvisible() throws {
        let (fixture, access) = try Self.fixture()
        let other = fixture.admin("POST", "/_sandbox/accounts", ["name": "Other Firm", "region": "US"])
        let otherID = try #require(UUID(uuidString: F.json(other)["id"] as? String ?? ""))
        #expect(Self.seed(fixture, 3, account: otherID).status.code == 201)
        let theirs = try Connection(url: fixture.databaseURL).execute(
            "SELECT id FROM sb_contacts WHERE account_id = $1 ORDER BY id", [otherID]
        ).rows.map { try $0.uuid("id").uuidString.lowercased() }
        #expect(theirs.count == 3)
        let mine = try Self.create(fixture, access, Self.person("Ada", "Lovelace"))

        #expect(Self.items(Self.page(fixture, access, [])).compactMap { $0["id"] as? String } == [mine])
        #expect(fixture.api("GET", "/contacts/\(theirs[0])", token: access).status == .notFound)
        #expect(Self.send(fixture, "PUT", "/contacts/\(theirs[0])", access, ["isDeleted": true]).status == .notFound)
        #expect(fixture.api("DELETE", "/contacts/\(theirs[0])", token: access).status == .notFound)
        let batch = F.json(Self.send(fixture, "POST", "/contacts/batch", access, ["ids": theirs + [mine]]))
        #expect(Self.items(batch).compactMap { $0["id"] as? String } == [mine])
        #expect(try Self.count(fixture, "SELECT count(*) AS n FROM sb_contacts WHERE is_deleted") == 0)
    }

    @Test func batchReadsManyInRequestOrder() throws {
        let (fixture, access) = try Self.fixture()
        #expect(Self.seed(fixture, 5).status.code == 201)
        let ids = Self.items(Self.page(fixture, access, [])).compactMap { $0["id"] as? String }
        #expect(ids.count == 5)
        let asked = [ids[3], "not-a-uuid", ids[0], UUID().uuidString.lowercased(), ids[3].uppercased(), ids[1]]
        let response = Self.send(fixture, "POST", "/contacts/batch", access, ["ids": asked])
        #expect(response.status == .ok)
        let body = try Self.body(response)
        #expect(Self.spec.problems(body, path: "/contacts/batch", method: "post", status: 200) == [])
        #expect(
            Self.items(body as? [String: Any] ?? [:]).compactMap { $0["id"] as? String } == [ids[3], ids[0], ids[1]])

        let empty = Self.send(fixture, "POST", "/contacts/batch", access, ["ids": [String]()])
        #expect(Self.items(F.json(empty)).isEmpty)
        let tooMany = Self.send(
            fixture, "POST", "/contacts/batch", access, ["ids": (0...500).map { _ in UUID().uuidString }])
        #expect(tooMany.status == .badRequest)
        #expect(
            Self.spec.problems(try Self.body(tooMany), path: "/contacts/batch", method: "post", status: 400) == [])
        #expect(Self.send(fixture, "POST", "/contacts/batch", access, ["ids": [1, 2]]).status == .badRequest)
        #expect(Self.send(fixture, "POST", "/contacts/batch", access, ["id": [ids[0]]]).status == .badRequest)
        #expect(fixture.api("GET", "/contacts/batch", token: access).status == .methodNotAllowed)
    }

    // MARK: Admin

    @Test func seedingInsertsTenThousandRealisticContacts() throws {
        let (fixture, access) = try Self.fixture()
        let seeded = Self.seed(fixture, 10_000)
        #expect(seeded.status.code == 201)
        #expect(F.json(seeded)["inserted"] as? Int == 10_000)
        let first = Self.page(fixture, access, [])
        #expect(first["size"] as? Int == 10_000)
        #expect(Self.spec.problems(first, path: "/contacts", method: "get", status: 200) == [])
        #expect(Self.page(fixture, access, [("Type", "Organisation"), ("Limit", "1")])["size"] as? Int == 1000)
        #expect(try Self.count(fixture, "SELECT count(DISTINCT email) AS n FROM sb_contacts") == 10_000)
        #expect(try Self.count(fixture, "SELECT count(DISTINCT phone) AS n FROM sb_contacts") == 10_000)
        #expect(try Self.events(fixture).isEmpty)
        // A second seed continues the numbering, so addresses stay unique.
        #expect(F.json(Self.seed(fixture, 10))["inserted"] as? Int == 10)
        #expect(try Self.count(fixture, "SELECT count(DISTINCT email) AS n FROM sb_contacts") == 10_010)

        #expect(Self.seed(fixture, 0).status == .badRequest)
        #expect(Self.seed(fixture, 100_001).status == .badRequest)
        #expect(Self.seed(fixture, 3, account: UUID()).status == .notFound)
    }

    @Test func aFirmUserEditIsASmokeballSourcedEvent() throws {
        let (fixture, access) = try Self.fixture()
        let id = try Self.create(fixture, access, Self.person("Ada", "King", email: "ada@analytical.example"))
        let path = "/_sandbox/accounts/\(fixture.accountID.uuidString.lowercased())/contacts/\(id)"
        let edited = fixture.admin("POST", path, ["changes": ["person": ["lastName": "Lovelace"]]])
        #expect(edited.status == .ok)
        #expect(Self.spec.problems(try Self.body(edited), schema: "Contact") == [])

        let read = F.json(fixture.api("GET", "/contacts/\(id)", token: access))
        #expect((read["person"] as? [String: Any])?["lastName"] as? String == "Lovelace")
        #expect((read["person"] as? [String: Any])?["email"] as? String == "ada@analytical.example")
        let events = try Self.events(fixture)
        #expect(events.map(\.type) == ["contact.created", "contact.updated"])
        #expect(events.map(\.source) == ["API", "Smokeball"])
        #expect(events[1].requestID == nil)
        #expect(events[1].clientID == nil)
        #expect(events[1].payload["id"] as? String == id)
        #expect(events[1].payload["versionId"] as? String == read["versionId"] as? String)

        // The firm user's screen refuses an invalid email outright.
        let invalid = fixture.admin("POST", path, ["changes": ["person": ["email": "not-an-address"]]])
        #expect(invalid.status == .badRequest)
        #expect(fixture.admin("POST", path, ["edits": [:] as [String: Any]]).status == .badRequest)
        let missing = "/_sandbox/accounts/\(fixture.accountID.uuidString.lowercased())/contacts/\(UUID())"
        #expect(fixture.admin("POST", missing, ["changes": ["isDeleted": true]]).status == .notFound)
        #expect(try Self.events(fixture).count == 2)
    }
}
