import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// `matter.created` with the setting `import_new_matters`: the sandbox's recorded events stored
/// as the webhooks route stores them and processed by `process_webhook_event` (`WebhookEventRig`).
@Suite struct MatterCreatedImportTests {
    static func setImportNewMatters(_ rig: WebhookEventRig, _ on: Bool) throws {
        try rig.fixture.seed.connection.execute(
            """
            UPDATE firm_integrations SET settings = settings || jsonb_build_object('import_new_matters', $2::boolean)
            WHERE firm_id = $1
            """, [rig.fixture.firm, on])
    }

    func count(_ rig: WebhookEventRig, _ sql: String) throws -> Int64 {
        try rig.fixture.seed.connection.execute(sql, [rig.fixture.firm]).single().int("n")
    }

    @Test(
        "matter.created imports that one matter and its client when import_new_matters is on, is ignored when off, and duplicates and re-runs change nothing"
    )
    func importsOneMatter() throws {
        try WebhookEventRig.with { rig in
            let fixture = rig.fixture
            let types = try ImportMattersJobTests.types(fixture)
            let mark = try rig.eventMark()
            let ada = try fixture.sandboxContact([
                "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.test",
                "phone": ["areaCode": "312", "number": "555-0101"],
            ])
            let divorce = try ImportMattersJobTests.sandboxMatter(
                fixture, type: types["Family Law/Divorce"], client: ada, status: "Pending", number: "SB-11",
                description: "Ada's divorce")
            let created = try rig.events(after: mark, types: ["matter.created"])
            try #require(created.count == 1)
            let matters = "SELECT count(*)::int8 AS n FROM matters WHERE firm_id = $1"
            let clients = "SELECT count(*)::int8 AS n FROM clients WHERE firm_id = $1"
            let before = (try count(rig, matters), try count(rig, clients))

            // Off (the default): recorded, nothing imported, no request.
            let requests = try fixture.logMark()
            let off = try rig.store(created[0])
            try rig.processAll()
            #expect(try rig.eventStatus(off) == "ignored")
            #expect(try fixture.requests(after: requests).isEmpty)
            #expect(try count(rig, matters) == before.0)

            // On: the same event delivered again imports it, as import_matters would.
            try Self.setImportNewMatters(rig, true)
            let on = try rig.store(created[0], copy: 1)
            try rig.processAll()
            #expect(try rig.eventStatus(on) == "applied")
            let imported = try #require(try ImportMattersJobTests.matter(fixture, smokeballID: divorce))
            #expect(try imported.string("case_type") == "divorce_standard")
            #expect(try imported.string("status") == "active")
            #expect(try imported.optionalString("case_number") == "SB-11")
            #expect(try imported.optionalString("smokeball_link_status") == "confirmed")
            #expect(try imported.string("first_name") == "Ada")
            #expect(try imported.optionalString("email") == "ada@example.test")
            #expect(try imported.optionalString("smokeball_contact_id") == ada)
            #expect(try imported.optionalString("smokeball_contact_linked_by") == "imported")
            #expect(try count(rig, matters) == before.0 + 1)
            #expect(try count(rig, clients) == before.1 + 1)

            // A duplicate (and a re-run of the job) finds it linked: no request, nothing new.
            let again = try fixture.logMark()
            let duplicate = try rig.store(created[0], copy: 2)
            try rig.processAll()
            #expect(try rig.eventStatus(duplicate) == "ignored")
            #expect(try fixture.requests(after: again).isEmpty)
            #expect(try count(rig, matters) == before.0 + 1)
            #expect(try count(rig, clients) == before.1 + 1)
            let reason = try fixture.seed.connection.execute(
                "SELECT status_reason FROM smokeball_webhook_events WHERE id = $1", [duplicate]
            ).single().optionalString("status_reason")
            #expect(reason == "already_linked")
        }
    }

    @Test(
        "with import_new_matters on, a matter.created of another area, of CaseHug's own matter, or of a second matter of a known client is handled as the import handles it"
    )
    func skipsAsTheImportDoes() throws {
        try WebhookEventRig.with { rig in
            let fixture = rig.fixture
            try Self.setImportNewMatters(rig, true)
            let types = try ImportMattersJobTests.types(fixture)
            let grace = try fixture.sandboxContact(["firstName": "Grace", "lastName": "Hopper"])
            let oursClient = try fixture.client(first: "Alan", last: "Turing")
            let ours = try fixture.matter(client: oursClient)
            let mark = try rig.eventMark()
            let bankruptcy = try ImportMattersJobTests.sandboxMatter(
                fixture, type: types["Bankruptcy/Chapter 7"], client: grace, number: "SB-21", description: "Ch. 7")
            let mine = try ImportMattersJobTests.sandboxMatter(
                fixture, type: types["Family Law/Divorce"], client: grace, number: "SB-22", description: "Ours",
                externalSystemID: ours.uuidString.lowercased())
            let first = try ImportMattersJobTests.sandboxMatter(
                fixture, type: types["Immigration/Asylum"], client: grace, status: "Closed", number: "SB-23",
                description: "Asylum")
            let second = try ImportMattersJobTests.sandboxMatter(
                fixture, type: types["Family Law/Paternity"], client: grace, number: "SB-24", description: "Paternity")
            var stored: [String: UUID] = [:]
            for event in try rig.events(after: mark, types: ["matter.created"]) {
                let payload = try JSONSerialization.jsonObject(with: Data(event.payload.utf8)) as? [String: Any]
                stored[try #require(payload?["id"] as? String)] = try rig.store(event)
            }
            try rig.processAll()
            #expect(try rig.eventStatus(try #require(stored[bankruptcy])) == "ignored")
            #expect(try rig.eventStatus(try #require(stored[mine])) == "ignored")
            #expect(try ImportMattersJobTests.matter(fixture, smokeballID: bankruptcy) == nil)
            #expect(try ImportMattersJobTests.matter(fixture, smokeballID: mine) == nil)
            let asylum = try #require(try ImportMattersJobTests.matter(fixture, smokeballID: first))
            #expect(try asylum.string("status") == "closed")
            let paternity = try #require(try ImportMattersJobTests.matter(fixture, smokeballID: second))
            // One client for both of Grace's matters.
            #expect(try asylum.optionalUUID("client_id") == paternity.optionalUUID("client_id"))
            #expect(
                try fixture.seed.connection.execute(
                    "SELECT count(*)::int8 AS n FROM clients WHERE firm_id = $1 AND last_name = 'Hopper'",
                    [fixture.firm]
                ).single().int("n") == 1)
        }
    }
}
