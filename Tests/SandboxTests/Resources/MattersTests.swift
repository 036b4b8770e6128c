import Basics
import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// Matters: 202 writes that become readable after the partner's write delay, Smokeball's list
/// filters and paging, 400 for malformed bodies, `error` events for what only processing finds,
/// status changes with their events, and the admin seed and firm-user controls.
@Suite struct MattersTests {
    typealias F = SandboxFixture

    static let spec = OpenAPIValidator.smokeball

    typealias Event = SandboxFixture.RecordedEvent

    // MARK: Helpers

    static func bytes(_ object: Any) -> [UInt8] { F.jsonBytes(object) }

    static func send(
        _ fixture: F, _ method: String, _ path: String, _ token: String, body: [UInt8], requestID: String = "req"
    ) -> Response {
        fixture.write(method, path, token: token, body: body, requestID: requestID)
    }

    static func send(
        _ fixture: F, _ method: String, _ path: String, _ token: String, json: Any, requestID: String = "req"
    ) -> Response {
        send(fixture, method, path, token, body: bytes(json), requestID: requestID)
    }

    /// GET /matters with a raw query string, so a parameter can repeat (`Status=Open&Status=Pending`).
    static func list(_ fixture: F, _ token: String, _ query: String = "") -> Response {
        let request = Request(
            method: "GET", path: "/matters", query: QueryString.dictionary(query), queryString: query,
            headers: ["host": "sandbox.test", "x-api-key": F.apiKey, "authorization": "Bearer " + token],
            remoteAddress: "127.0.0.1", requestID: "test")
        return respond(to: request, with: fixture.handler, log: Logger(route: "sandbox-test")).0
    }

    static func items(_ response: Response) -> [[String: Any]] { F.json(response)["value"] as? [[String: Any]] ?? [] }

    /// The numbers a list answers, sorted.
    static func numbers(_ fixture: F, _ token: String, _ query: String) -> [String] {
        let response = list(fixture, token, query)
        #expect(response.status == .ok, "\(query): \(F.text(response))")
        return items(response).compactMap { $0["number"] as? String }.sorted()
    }

    /// A person inserted directly (the contacts API is another resource): "First Last", or a
    /// company when `company` is set.
    static func contact(_ fixture: F, _ name: String, account: UUID? = nil, company: Bool = false) throws -> String {
        let id = UUID()
        let words = name.split(separator: " ").map(String.init)
        let doc: [String: Any] =
            company
            ? ["company": ["name": name]]
            : ["person": ["firstName": words.dropLast().joined(separator: " "), "lastName": words.last ?? ""]]
        try Connection(url: fixture.databaseURL).execute(
            """
            INSERT INTO sb_contacts (id, account_id, version_id, type, name, doc, created_at, updated_at, visible_at)
            VALUES ($1, $2, $1, $3, $4, $5::jsonb, $6, $6, $6)
            """,
            [
                id, account ?? fixture.accountID, company ? "Organisation" : "Person", name,
                SQLValue.json(String(decoding: F.jsonBytes(doc), as: UTF8.self)), fixture.now,
            ])
        return id.uuidString.lowercased()
    }

    static func matterType(_ fixture: F, _ name: String, region: String = "US", location: String = "CA") throws
        -> String
    {
        try Connection(url: fixture.databaseURL).execute(
            "SELECT id FROM sb_matter_types WHERE region = $1 AND location = $2 AND name = $3 AND NOT is_deleted",
            [region, location, name]
        ).single().uuid("id").uuidString.lowercased()
    }

    static func events(_ fixture: F) throws -> [Event] { try fixture.events() }

    static func count(_ fixture: F, _ sql: String, _ parameters: [any SQLValueConvertible] = []) throws -> Int {
        Int(try Connection(url: fixture.databaseURL).execute(sql, parameters).single().int("n"))
    }

    /// A valid create body for the fixture's US account; `changes` override or add properties.
    static func body(type: String, clients: [String], _ changes: [String: Any] = [:]) -> [String: Any] {
        var body: [String: Any] = ["matterTypeId": type, "clientIds": clients, "status": "Open"]
        for (key, value) in changes { body[key] = value }
        return body
    }

    /// Creates a matter through the API; returns its id.
    static func create(_ fixture: F, _ token: String, _ body: [String: Any], requestID: String = "create")
        throws -> String
    {
        let response = send(fixture, "POST", "/matters", token, json: body, requestID: requestID)
        #expect(response.status == .accepted, "\(F.text(response))")
        return try #require(F.json(response)["id"] as? String)
    }

    static func matter(_ fixture: F, _ token: String, _ id: String) -> [String: Any] {
        let response = fixture.api("GET", "/matters/" + id, token: token)
        #expect(response.status == .ok, "\(F.text(response))")
        return F.json(response)
    }

    static func registerClient(_ fixture: F, writeDelayMilliseconds: Int) -> Response {
        fixture.admin(
            "POST", "/_sandbox/clients",
            [
                "client_id": F.clientID, "client_secret": F.clientSecret, "api_key": F.apiKey,
                "redirect_uris": [F.redirectURI], "rate_per_second": 1000, "burst": 1000,
                "write_delay_ms": writeDelayMilliseconds,
            ])
    }

    // MARK: Create and read

    @Test func aCreatedMatterIsAcceptedThenReadableAfterTheWriteDelay() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        #expect(Self.registerClient(fixture, writeDelayMilliseconds: 2000).status == .created)
        let (access, _) = fixture.connect()
        let client = try Self.contact(fixture, "Avery Smith")
        let otherSide = try Self.contact(fixture, "Jordan Jones")
        let divorce = try Self.matterType(fixture, "Divorce")
        // A staff member's own id (not its user's).
        let staff = try Connection(url: fixture.databaseURL).execute(
            "SELECT staff_id FROM sb_users WHERE account_id = $1", [fixture.accountID]
        ).single().uuid("staff_id").uuidString.lowercased()
        let response = Self.send(
            fixture, "POST", "/matters", access,
            json: Self.body(
                type: divorce, clients: [client],
                [
                    "number": "SB-100", "otherSideIds": [otherSide], "clientRole": "petitioner",
                    "description": "Smith dissolution", "openedDate": "2024-03-01T09:30:00Z", "isLead": false,
                    "externalSystemId": "case-100", "personResponsibleStaffId": staff,
                ]), requestID: "create-1")
        #expect(response.status == .accepted)
        let link = F.json(response)
        #expect(Self.spec.problems(link, path: "/matters", method: "post", status: 202) == [])
        #expect(Self.spec.problems(link, schema: "Link") == [])
        let id = try #require(link["id"] as? String)
        #expect(link["href"] as? String == "http://sandbox.test/matters/\(id)")
        #expect(response.header("Location") == "http://sandbox.test/matters/\(id)")

        // Not yet processed: neither the matter nor a list shows it.
        #expect(fixture.api("GET", "/matters/\(id)", token: access).status == .notFound)
        #expect(F.json(Self.list(fixture, access))["size"] as? Int == 0)

        let created = try Self.events(fixture)
        #expect(created.map(\.type) == ["matter.created"])
        #expect(created.first?.requestID == "create-1")
        #expect(created.first?.source == "API")
        #expect(created.first?.clientID == F.clientID)
        #expect(created.first?.payload["id"] as? String == id)
        #expect(created.first?.payload["number"] as? String == "SB-100")

        fixture.advance(by: 3)
        let single = fixture.api("GET", "/matters/\(id)", token: access)
        #expect(single.status == .ok)
        let body = try JSONSerialization.jsonObject(with: Data(single.body))
        #expect(Self.spec.problems(body, path: "/matters/{matterId}", method: "get", status: 200) == [])
        let matter = body as? [String: Any] ?? [:]
        #expect(matter["id"] as? String == id)
        #expect(matter["href"] as? String == "http://sandbox.test/matters/\(id)")
        #expect(matter["number"] as? String == "SB-100")
        #expect(matter["title"] as? String == "SB-100 - Smith - Divorce - Jones")
        #expect(matter["status"] as? String == "Open")
        #expect(matter["description"] as? String == "Smith dissolution")
        #expect(matter["isLead"] as? Bool == false)
        #expect(matter["externalSystemId"] as? String == "case-100")
        #expect(matter["openedDate"] as? String == "2024-03-01T09:30:00Z")
        #expect(matter["closedDate"] is NSNull)
        #expect((matter["matterType"] as? [String: Any])?["id"] as? String == divorce)
        #expect((matter["clients"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [client])
        #expect((matter["otherSides"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [otherSide])
        #expect((matter["personResponsible"] as? [String: Any])?["id"] as? String == staff)
        // versionId is the ticks of the last change, applied when the write delay ended.
        let ticks = try #require(Int64(matter["versionId"] as? String ?? ""))
        #expect(abs(DotNetTicks.date(ticks).timeIntervalSince(fixture.now.addingTimeInterval(-1))) < 2)

        let page = Self.list(fixture, access)
        let pageBody = try JSONSerialization.jsonObject(with: Data(page.body))
        #expect(Self.spec.problems(pageBody, path: "/matters", method: "get", status: 200) == [])
        #expect(F.json(page)["size"] as? Int == 1)
        #expect(Self.items(page).first?["id"] as? String == id)

        // The role is stored as the type spells it; the other side takes the type's other default.
        let doc = try Connection(url: fixture.databaseURL).execute(
            "SELECT doc->>'clientRole' AS client, doc->>'otherSideRole' AS other FROM sb_matters"
        ).single()
        #expect(try doc.string("client") == "Petitioner")
        #expect(try doc.string("other") == "Respondent")
        #expect(try Self.events(fixture).count == 1)
    }

    // MARK: Listing

    @Test func listFiltersNarrowToExactlyTheMatchingMatters() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let avery = try Self.contact(fixture, "Avery Smith")
        let blake = try Self.contact(fixture, "Blake Okafor")
        let divorce = try Self.matterType(fixture, "Divorce")
        let custody = try Self.matterType(fixture, "Custody")
        let lead = try Self.matterType(fixture, "Lead - Family Law")
        _ = try Self.create(fixture, access, Self.body(type: divorce, clients: [avery], ["number": "FIL-1"]))
        _ = try Self.create(
            fixture, access,
            Self.body(
                type: custody, clients: [blake],
                ["number": "FIL-2", "status": "Pending", "otherSideIds": [avery], "description": "Custody of twins"]))
        _ = try Self.create(
            fixture, access, Self.body(type: divorce, clients: [blake], ["number": "FIL-3", "status": "Closed"]))
        _ = try Self.create(
            fixture, access, Self.body(type: divorce, clients: [blake], ["number": "FIL-4", "status": "Cancelled"]))
        _ = try Self.create(
            fixture, access, Self.body(type: lead, clients: [avery], ["number": "LEAD-1", "isLead": true]))

        #expect(Self.numbers(fixture, access, "") == ["FIL-1", "FIL-2", "FIL-3", "FIL-4"])
        #expect(Self.numbers(fixture, access, "Status=Open&Status=Pending") == ["FIL-1", "FIL-2"])
        #expect(Self.numbers(fixture, access, "Status=closed,Cancelled") == ["FIL-3", "FIL-4"])
        #expect(Self.numbers(fixture, access, "MatterTypeId=\(divorce)") == ["FIL-1", "FIL-3", "FIL-4"])
        #expect(Self.numbers(fixture, access, "MatterTypeId=\(custody)&Status=Open") == [])
        #expect(Self.numbers(fixture, access, "Search=fil-2") == ["FIL-2"])
        #expect(Self.numbers(fixture, access, "Search=okafor") == ["FIL-2", "FIL-3", "FIL-4"])
        #expect(Self.numbers(fixture, access, "Search=TWINS") == ["FIL-2"])
        #expect(Self.numbers(fixture, access, "Search=FIL-*3") == ["FIL-3"])
        #expect(Self.numbers(fixture, access, "ContactId=\(avery)") == ["FIL-1", "FIL-2"])
        #expect(Self.numbers(fixture, access, "Type=Leads") == ["LEAD-1"])
        #expect(Self.numbers(fixture, access, "IsLead=true") == ["LEAD-1"])
        #expect(
            Self.numbers(fixture, access, "Type=Matters,Leads") == ["FIL-1", "FIL-2", "FIL-3", "FIL-4", "LEAD-1"])

        // Incremental reads: only what changed since the given moment (ticks or ISO date-time).
        fixture.advance(by: 60)
        let since = fixture.now.addingTimeInterval(-30)
        let latest = try Self.create(fixture, access, Self.body(type: divorce, clients: [avery], ["number": "FIL-5"]))
        let versionID = try #require(Self.matter(fixture, access, latest)["versionId"] as? String)
        #expect(Self.numbers(fixture, access, "UpdatedSince=\(versionID)") == ["FIL-5"])
        #expect(Self.numbers(fixture, access, "UpdatedSince=\(DotNetTicks.from(since))") == ["FIL-5"])
        let isoSince = since.formatted(Date.ISO8601FormatStyle())
        #expect(Self.numbers(fixture, access, "LastUpdated=\(isoSince)") == ["FIL-5"])
        #expect(Self.numbers(fixture, access, "UpdatedSince=\(DotNetTicks.from(since) - 600_000_000)").count == 5)

        for query in ["", "Status=Open&Status=Pending", "Type=Matters,Leads", "Search=okafor&Limit=2"] {
            let body = try JSONSerialization.jsonObject(with: Data(Self.list(fixture, access, query).body))
            #expect(Self.spec.problems(body, path: "/matters", method: "get", status: 200) == [], "\(query)")
        }
        // A repeated parameter survives on the paging links.
        let paged = F.json(Self.list(fixture, access, "Status=Open&Status=Pending&Limit=1"))
        let next = try #require((paged["next"] as? [String: Any])?["href"] as? String)
        #expect(next.contains("Status=Open&Status=Pending"))
        #expect(next.contains("offset=1"))
    }

    @Test(arguments: [
        ("UpdatedSince=637873555398585000&LastUpdated=2022-04-23T14:00:00Z", "UpdatedSince"),
        ("Status=Open&Status=Archived", "Status"), ("UpdatedSince=yesterday", "UpdatedSince"),
        ("LastUpdated=not-a-date", "LastUpdated"), ("MatterTypeId=divorce", "MatterTypeId"),
        ("ContactId=42", "ContactId"), ("Type=Everything", "Type"), ("Limit=501", "Limit"),
        // Ticks as contacts take them: 0 to DateTime.MaxValue.
        ("UpdatedSince=-1", "UpdatedSince"), ("UpdatedSince=3155378976000000000", "UpdatedSince"),
    ])
    func malformedListParametersAreBadRequests(query: String, named: String) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let response = Self.list(fixture, access, query)
        #expect(response.status == .badRequest)
        let body = try JSONSerialization.jsonObject(with: Data(response.body))
        #expect(Self.spec.problems(body, schema: "ProblemDetails") == [])
        #expect(F.json(response)["status"] as? Int == 400)
        #expect((F.json(response)["detail"] as? String)?.contains(named) == true)
    }

    @Test func pagesWalkEveryMatterExactlyOnce() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let seeded = fixture.admin(
            "POST", "/_sandbox/accounts/\(fixture.accountID.uuidString)/matters/seed", ["count": 23])
        #expect(seeded.status == .created)
        let all = Self.items(Self.list(fixture, access)).compactMap { $0["id"] as? String }
        #expect(all.count == 23)
        var seen: [String] = []
        var offset = 0
        while offset < 30 {
            let page = F.json(Self.list(fixture, access, "Offset=\(offset)&Limit=5"))
            #expect(page["size"] as? Int == 23)
            #expect(page["offset"] as? Int == offset)
            let ids = (page["value"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(ids.count == (offset < 20 ? 5 : (offset == 20 ? 3 : 0)))
            #expect((page["next"] is NSNull) == (offset + 5 >= 23))
            seen += ids
            offset += 5
        }
        #expect(seen == all)
        #expect(Set(seen).count == 23)
    }

    @Test func anotherAccountsMattersAreInvisible() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let other = F.json(fixture.admin("POST", "/_sandbox/accounts", ["name": "Other Firm", "region": "US"]))
        let otherID = try #require((other["id"] as? String).flatMap(UUID.init(uuidString:)))
        let seeded = fixture.admin("POST", "/_sandbox/accounts/\(otherID.uuidString)/matters/seed", ["count": 3])
        #expect(seeded.status == .created)
        let theirs = try Connection(url: fixture.databaseURL).execute(
            "SELECT id FROM sb_matters WHERE account_id = $1 ORDER BY id", [otherID]
        ).rows.map { try $0.uuid("id").uuidString.lowercased() }
        #expect(theirs.count == 3)

        let state = "SELECT string_agg(status || version_id::text, ',' ORDER BY id) AS s FROM sb_matters"
        let before = try Connection(url: fixture.databaseURL).execute(state).single().string("s")
        #expect(F.json(Self.list(fixture, access))["size"] as? Int == 0)
        #expect(F.json(Self.list(fixture, access, "Type=Matters,Leads&Search=SB-"))["size"] as? Int == 0)
        for id in theirs {
            let single = fixture.api("GET", "/matters/\(id)", token: access)
            #expect(single.status == .notFound)
            #expect(Self.spec.problems(F.json(single), schema: "ProblemDetails") == [])
            #expect(
                Self.send(fixture, "PATCH", "/matters/\(id)", access, json: ["status": "Closed"]).status == .notFound)
        }
        #expect(try Connection(url: fixture.databaseURL).execute(state).single().string("s") == before)
        #expect(try Self.events(fixture).isEmpty)
    }

    // MARK: Refusals and processing failures

    @Test(arguments: [
        ("[]", "JSON object"), ("{not json", "JSON object"),
        (#"{"status": "Open", "clientIds": ["{CLIENT}"]}"#, "matterTypeId"),
        (#"{"matterTypeId": 42, "status": "Open", "clientIds": ["{CLIENT}"]}"#, "matterTypeId"),
        (#"{"matterTypeId": "divorce", "status": "Open", "clientIds": ["{CLIENT}"]}"#, "matterTypeId"),
        (#"{"matterTypeId": "{TYPE}", "clientIds": ["{CLIENT}"]}"#, "status"),
        (#"{"matterTypeId": "{TYPE}", "status": "Archived", "clientIds": ["{CLIENT}"]}"#, "status"),
        (#"{"matterTypeId": "{TYPE}", "status": "Open", "clientIds": "{CLIENT}"}"#, "clientIds"),
        (#"{"matterTypeId": "{TYPE}", "status": "Open", "clientIds": []}"#, "clientIds"),
        (#"{"matterTypeId": "{TYPE}", "status": "Open", "clientIds": ["{CLIENT}"], "isLead": "yes"}"#, "isLead"),
        (#"{"matterTypeId": "{TYPE}", "status": "Open", "clientIds": ["{CLIENT}"], "isLead": 1}"#, "isLead"),
        (
            #"{"matterTypeId": "{TYPE}", "status": "Open", "clientIds": ["{CLIENT}"], "openedDate": "last tuesday"}"#,
            "openedDate"
        ),
        (#"{"matterTypeId": "{TYPE}", "status": "Open", "clientIds": ["{CLIENT}"], "description": 7}"#, "description"),
        (
            #"{"matterTypeId": "{TYPE}", "status": "Open", "clientIds": ["{CLIENT}"], "otherSideIds": [1]}"#,
            "otherSideIds"
        ),
        (
            #"{"matterTypeId": "{TYPE}", "status": "Open", "clientIds": ["{CLIENT}"], "clientRole": "Petitioner", "otherSideRole": "Petitioner"}"#,
            "clientRole"
        ),
    ])
    func malformedBodiesAreRefusedAndNothingIsStored(template: String, field: String) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let body =
            template
            .replacingOccurrences(of: "{TYPE}", with: try Self.matterType(fixture, "Divorce"))
            .replacingOccurrences(of: "{CLIENT}", with: try Self.contact(fixture, "Avery Smith"))
        let response = Self.send(fixture, "POST", "/matters", access, body: Array(body.utf8))
        #expect(response.status == .badRequest)
        let problem = try JSONSerialization.jsonObject(with: Data(response.body))
        #expect(Self.spec.problems(problem, path: "/matters", method: "post", status: 400) == [])
        #expect(F.json(response)["status"] as? Int == 400)
        #expect((F.json(response)["detail"] as? String)?.contains(field) == true, "\(F.text(response))")
        #expect(try Self.count(fixture, "SELECT count(*) AS n FROM sb_matters") == 0)
        #expect(try Self.events(fixture).isEmpty)
    }

    /// Smokeball computes the title ("AM-0323-0005 - Smith - Sale - Jones"): number, the clients'
    /// last names, the matter type's name, the other side's last names; a company gives its
    /// name; missing parts are left out; several names join with " & ".
    @Test func theTitleIsComputedFromNumberClientsTypeAndOtherSide() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let smith = try Self.contact(fixture, "Avery Smith")
        let jones = try Self.contact(fixture, "Mary Ann Jones")
        let acme = try Self.contact(fixture, "Acme Holdings LLC", company: true)
        let okafor = try Self.contact(fixture, "Blake Okafor")
        let divorce = try Self.matterType(fixture, "Divorce")
        let full = try Self.create(
            fixture, access,
            Self.body(
                type: divorce, clients: [smith, jones], ["number": "AM-0323-0005", "otherSideIds": [acme, okafor]]))
        #expect(
            Self.matter(fixture, access, full)["title"] as? String
                == "AM-0323-0005 - Smith & Jones - Divorce - Acme Holdings LLC & Okafor")
        let bare = try Self.create(fixture, access, Self.body(type: divorce, clients: [acme]))
        #expect(Self.matter(fixture, access, bare)["title"] as? String == "Acme Holdings LLC - Divorce")
        // Computed on every read: a client's new last name shows at once.
        #expect(
            Self.send(fixture, "PUT", "/contacts/\(smith)", access, json: ["person": ["lastName": "Smyth"]]).status
                == .accepted)
        #expect(
            Self.matter(fixture, access, full)["title"] as? String
                == "AM-0323-0005 - Smyth & Jones - Divorce - Acme Holdings LLC & Okafor")
    }

    /// No title or name can be written: MatterDto and MatterDto2 have neither, and refuse them.
    @Test(arguments: [("POST", "title"), ("POST", "name"), ("PATCH", "title"), ("PATCH", "name"), ("PUT", "Title")])
    func aTitleOrNameCannotBeWritten(method: String, property: String) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let client = try Self.contact(fixture, "Avery Smith")
        let divorce = try Self.matterType(fixture, "Divorce")
        let existing =
            method == "POST" ? nil : try Self.create(fixture, access, Self.body(type: divorce, clients: [client]))
        let response = Self.send(
            fixture, method, "/matters" + (existing.map { "/" + $0 } ?? ""), access,
            json: Self.body(type: divorce, clients: [client], [property: "Smith v Jones"]))
        #expect(response.status == .badRequest)
        #expect((F.json(response)["detail"] as? String)?.contains(property) == true, "\(F.text(response))")
        #expect(try Self.count(fixture, "SELECT count(*) AS n FROM sb_matters") == (existing == nil ? 0 : 1))
    }

    @Test(arguments: ["unknown type", "other region", "retired type", "bad client role", "unknown client", "lead type"])
    func failuresFoundWhileProcessingArriveAsErrorEvents(failure: String) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let client = try Self.contact(fixture, "Avery Smith")
        let missing = UUID().uuidString.lowercased()
        let divorce = try Self.matterType(fixture, "Divorce")
        let (body, reason): ([String: Any], String) =
            switch failure {
            case "unknown type": (Self.body(type: missing, clients: [client]), "\(missing) does not name a matter type")
            case "other region":
                (
                    Self.body(
                        type: try Self.matterType(fixture, "Divorce", region: "AU", location: "NSW"), clients: [client]),
                    "belongs to region AU"
                )
            case "retired type":
                (
                    Self.body(
                        type: try Connection(url: fixture.databaseURL).execute(
                            "SELECT id FROM sb_matter_types WHERE name = 'Dissolution (Legacy)'"
                        ).single().uuid("id").uuidString.lowercased(), clients: [client]), "has been deleted"
                )
            case "bad client role":
                (
                    Self.body(type: divorce, clients: [client], ["clientRole": "Buyer"]),
                    "clientRole 'Buyer' is not one of the matter type's representative options: Petitioner, Respondent"
                )
            case "unknown client":
                (Self.body(type: divorce, clients: [client, missing]), "no such contact: \(missing)")
            default:
                (
                    Self.body(type: try Self.matterType(fixture, "Lead - Family Law"), clients: [client]),
                    "is a lead type"
                )
            }
        let response = Self.send(fixture, "POST", "/matters", access, json: body, requestID: "fail-1")
        #expect(response.status == .accepted)
        let link = F.json(response)
        #expect(Self.spec.problems(link, path: "/matters", method: "post", status: 202) == [])
        let id = try #require(link["id"] as? String)

        #expect(try Self.count(fixture, "SELECT count(*) AS n FROM sb_matters") == 0)
        let events = try Self.events(fixture)
        #expect(events.map(\.type) == ["error"])
        #expect(events.first?.requestID == "fail-1")
        #expect(events.first?.source == "API")
        // Smokeball's error payload: exactly message, resourceName and resourceId.
        #expect(Set((events.first?.payload ?? [:]).keys) == ["message", "resourceName", "resourceId"])
        #expect(events.first?.payload["resourceName"] as? String == "matter")
        #expect(events.first?.payload["resourceId"] as? String == id)
        let recorded = events.first?.payload["message"] as? String ?? ""
        #expect(recorded.contains(reason), "\(recorded)")
        #expect(fixture.api("GET", "/matters/\(id)", token: access).status == .notFound)
    }

    // MARK: Updates

    @Test func closingAMatterRecordsUpdatedAndClosed() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let client = try Self.contact(fixture, "Avery Smith")
        let id = try Self.create(
            fixture, access,
            Self.body(type: try Self.matterType(fixture, "Divorce"), clients: [client], ["number": "UPD-1"]))
        let before = try #require(Int64(Self.matter(fixture, access, id)["versionId"] as? String ?? ""))

        let closed = Self.send(
            fixture, "PATCH", "/matters/\(id)", access, json: ["status": "Closed"], requestID: "close-1")
        #expect(closed.status == .accepted)
        #expect(Self.spec.problems(F.json(closed), path: "/matters/{matterId}", method: "patch", status: 202) == [])
        #expect(F.json(closed)["id"] as? String == id)
        let matter = Self.matter(fixture, access, id)
        #expect(matter["status"] as? String == "Closed")
        #expect(matter["number"] as? String == "UPD-1")
        let closedDate = try #require((matter["closedDate"] as? String).flatMap(Matters.parseDate))
        #expect(abs(closedDate.timeIntervalSince(fixture.now)) < 5)
        let after = try #require(Int64(matter["versionId"] as? String ?? ""))
        #expect(after > before)

        var events = try Self.events(fixture).filter { $0.type != "matter.created" }
        #expect(events.map(\.type) == ["matter.updated", "matter.closed"])
        #expect(events.allSatisfy { $0.requestID == "close-1" && $0.source == "API" && $0.clientID == F.clientID })
        #expect(events.allSatisfy { $0.payload["id"] as? String == id && $0.payload["status"] as? String == "Closed" })

        // A further change to a closed matter is an update only; reopening clears the closed date.
        let described = Self.send(fixture, "PATCH", "/matters/\(id)", access, json: ["description": "Settled"])
        #expect(described.status == .accepted)
        #expect(Self.matter(fixture, access, id)["description"] as? String == "Settled")
        #expect(Self.matter(fixture, access, id)["status"] as? String == "Closed")
        #expect(Self.send(fixture, "PATCH", "/matters/\(id)", access, json: ["status": "Open"]).status == .accepted)
        #expect(Self.matter(fixture, access, id)["closedDate"] is NSNull)
        events = try Self.events(fixture).filter { $0.type != "matter.created" }
        #expect(events.map(\.type) == ["matter.updated", "matter.closed", "matter.updated", "matter.updated"])
    }

    @Test func putDeleteAndUnsupportedUpdates() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let client = try Self.contact(fixture, "Avery Smith")
        let second = try Self.contact(fixture, "Blake Okafor")
        let divorce = try Self.matterType(fixture, "Divorce")
        let id = try Self.create(fixture, access, Self.body(type: divorce, clients: [client], ["number": "PUT-1"]))
        let path = "/matters/\(id)"

        // PUT updates like PATCH but cannot change the clients.
        let put = Self.send(fixture, "PUT", path, access, json: ["description": "Put here", "clientIds": [client]])
        #expect(put.status == .accepted)
        #expect(Self.spec.problems(F.json(put), path: "/matters/{matterId}", method: "put", status: 202) == [])
        #expect(Self.matter(fixture, access, id)["description"] as? String == "Put here")
        let refused = [
            Self.send(fixture, "PUT", path, access, json: ["clientIds": [second]]),
            Self.send(fixture, "PATCH", path, access, json: ["clientRole": "Respondent"]),
            Self.send(fixture, "PATCH", path, access, json: ["isLead": true]),
            Self.send(fixture, "PATCH", path, access, json: ["status": NSNull()]),
            Self.send(fixture, "PATCH", path, access, json: ["status": "Archived"]),
        ]
        #expect(refused.map(\.status.code) == [400, 400, 400, 400, 400])
        for response in refused {
            let body = try JSONSerialization.jsonObject(with: Data(response.body))
            #expect(Self.spec.problems(body, path: "/matters/{matterId}", method: "patch", status: 400) == [])
        }
        // PATCH may change the clients; an unknown one fails while processing and changes nothing.
        #expect(Self.send(fixture, "PATCH", path, access, json: ["clientIds": [client, second]]).status == .accepted)
        let missing = UUID().uuidString.lowercased()
        let failed = Self.send(fixture, "PATCH", path, access, json: ["clientIds": [missing]], requestID: "bad-client")
        #expect(failed.status == .accepted)
        let clients = (Self.matter(fixture, access, id)["clients"] as? [[String: Any]])?.compactMap {
            $0["id"] as? String
        }
        #expect(clients == [client, second])
        let error = try #require(try Self.events(fixture).last)
        #expect(error.type == "error")
        #expect(error.requestID == "bad-client")
        #expect(error.payload["resourceId"] as? String == id)
        #expect(error.payload["message"] as? String == "no such contact: \(missing)")

        // Changing the type takes the new type's roles.
        let custody = try Self.matterType(fixture, "Custody")
        #expect(Self.send(fixture, "PATCH", path, access, json: ["matterTypeId": custody]).status == .accepted)
        #expect((Self.matter(fixture, access, id)["matterType"] as? [String: Any])?["id"] as? String == custody)

        let deleted = fixture.api("DELETE", path, token: access)
        #expect(deleted.status == .accepted)
        #expect(Self.spec.problems(F.json(deleted), path: "/matters/{matterId}", method: "delete", status: 202) == [])
        #expect(Self.matter(fixture, access, id)["status"] as? String == "Deleted")
        let lifecycle = try Self.events(fixture).filter { $0.type == "matter.deleted" || $0.type == "matter.closed" }
        #expect(lifecycle.map(\.type) == ["matter.deleted"])
        #expect(lifecycle.first?.payload["id"] as? String == id)
        // Deleting again changes nothing more: no second matter.deleted.
        #expect(fixture.api("DELETE", path, token: access).status == .accepted)
        #expect(try Self.events(fixture).filter { $0.type == "matter.deleted" }.count == 1)
        #expect(fixture.api("POST", path, token: access).status == .methodNotAllowed)
        #expect(fixture.api("DELETE", "/matters", token: access).status == .methodNotAllowed)
        #expect(fixture.api("GET", "/matters/not-a-uuid", token: access).status == .notFound)
    }

    @Test func aLeadBecomesAMatterWithAMatterTypeAndRole() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let client = try Self.contact(fixture, "Avery Smith")
        let id = try Self.create(
            fixture, access,
            Self.body(
                type: try Self.matterType(fixture, "Lead - Family Law"), clients: [client],
                ["isLead": true, "number": "LEAD-9", "leadOpenedDate": "2024-05-01T00:00:00Z"]))
        let lead = Self.matter(fixture, access, id)
        #expect(lead["isLead"] as? Bool == true)
        #expect(lead["leadOpenedDate"] as? String == "2024-05-01T00:00:00Z")
        #expect(Self.spec.problems(lead, schema: "Matter") == [])

        let path = "/matters/\(id)"
        #expect(Self.send(fixture, "PATCH", path, access, json: ["isLead": false]).status == .badRequest)
        let divorce = try Self.matterType(fixture, "Divorce")
        let converted = Self.send(
            fixture, "PATCH", path, access,
            json: ["isLead": false, "matterTypeId": divorce, "clientRole": "Respondent"])
        #expect(converted.status == .accepted)
        let matter = Self.matter(fixture, access, id)
        #expect(matter["isLead"] as? Bool == false)
        #expect(matter["leadOpenedDate"] == nil)
        #expect(matter["openedDate"] as? String != nil)
        #expect(Self.numbers(fixture, access, "") == ["LEAD-9"])
        let roles = try Connection(url: fixture.databaseURL).execute(
            "SELECT doc->>'clientRole' AS client, doc->>'otherSideRole' AS other FROM sb_matters"
        ).single()
        #expect(try roles.string("client") == "Respondent")
        #expect(try roles.string("other") == "Petitioner")
    }

    // MARK: Admin

    @Test func seedingInsertsTenThousandMattersOfTheAccountsRegion() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let path = "/_sandbox/accounts/\(fixture.accountID.uuidString)/matters/seed"
        let started = Date()
        let seeded = fixture.admin("POST", path, ["count": 10_000])
        // The figure, for the record (not a timing assertion).
        print("seeding 10,000 matters took \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        #expect(seeded.status == .created)
        #expect(F.json(seeded)["count"] as? Int == 10_000)
        #expect(
            try Self.count(fixture, "SELECT count(*) AS n FROM sb_matters WHERE account_id = $1", [fixture.accountID])
                == 10_000)
        #expect(try Self.count(fixture, "SELECT count(DISTINCT number) AS n FROM sb_matters") == 10_000)
        #expect(
            try Self.count(
                fixture,
                "SELECT count(*) AS n FROM sb_matters m JOIN sb_matter_types t ON t.id = m.matter_type_id WHERE t.region <> 'US'"
            ) == 0)
        #expect(try Self.events(fixture).isEmpty)
        let page = Self.list(fixture, access, "Limit=50")
        #expect(F.json(page)["size"] as? Int == 10_000)
        let body = try JSONSerialization.jsonObject(with: Data(page.body))
        #expect(Self.spec.problems(body, path: "/matters", method: "get", status: 200) == [])

        for bad: Any in [0, 100_001, "ten", true, 2.5] {
            #expect(fixture.admin("POST", path, ["count": bad]).status == .badRequest)
        }
        #expect(
            fixture.admin("POST", "/_sandbox/accounts/\(UUID().uuidString)/matters/seed", ["count": 1]).status
                == .notFound)
        #expect(fixture.admin("GET", path).status == .methodNotAllowed)
    }

    @Test func aFirmUserChangingAStatusIsASmokeballEvent() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let account = fixture.accountID.uuidString.lowercased()
        #expect(fixture.admin("POST", "/_sandbox/accounts/\(account)/matters/seed", ["count": 1]).status == .created)
        let id = try Connection(url: fixture.databaseURL).execute("SELECT id FROM sb_matters").single().uuid("id")
            .uuidString.lowercased()
        let path = "/_sandbox/accounts/\(account)/matters/\(id)/status"

        let changed = fixture.admin("POST", path, ["status": "Closed"])
        #expect(changed.status == .ok)
        #expect(F.json(changed)["status"] as? String == "Closed")
        #expect(Self.matter(fixture, access, id)["status"] as? String == "Closed")
        let events = try Self.events(fixture)
        #expect(events.map(\.type) == ["matter.updated", "matter.closed"])
        #expect(events.allSatisfy { $0.source == "Smokeball" && $0.requestID == nil && $0.clientID == nil })
        #expect(events.allSatisfy { $0.payload["id"] as? String == id })
        // A firm user acts: the account's user, or the one named.
        let user = try Connection(url: fixture.databaseURL).execute(
            "SELECT id::text AS id FROM sb_users WHERE account_id = $1", [fixture.accountID]
        ).single().string("id")
        #expect(events.allSatisfy { $0.userID == user })
        #expect(fixture.admin("POST", path, ["status": "Open", "user_id": user]).status == .ok)
        #expect(try Self.events(fixture).last?.userID == user)

        #expect(fixture.admin("POST", path, ["status": "Archived"]).status == .badRequest)
        #expect(fixture.admin("POST", path, [:]).status == .badRequest)
        #expect(fixture.admin("POST", path, ["status": "Open", "user_id": UUID().uuidString]).status == .badRequest)
        let unknown = "/_sandbox/accounts/\(account)/matters/\(UUID().uuidString)/status"
        #expect(fixture.admin("POST", unknown, ["status": "Open"]).status == .notFound)
        #expect(try Self.events(fixture).count == 3)
    }
}
