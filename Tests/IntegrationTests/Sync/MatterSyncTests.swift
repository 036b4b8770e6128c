import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration
@testable import Smokeball

/// `sync_matter`, `sync_matters` and `pull_matters` against the sandbox, run in this process on
/// jobs of the real queue.
@Suite(.serialized) struct MatterSyncTests {
    @Test("a first sync creates one contact and one matter with the right fields, and a second creates nothing")
    func firstAndSecondSync() throws {
        try MatterSyncFixture.with { fixture in
            let client = try fixture.client(email: "ada.lovelace@example.test", phone: "+1 (555) 010-0001")
            let matter = try fixture.matter(client: client, title: "Lovelace v. Lovelace", number: "CH-0042")
            let mark = try fixture.logMark()
            let first = try fixture.syncMatter(matter)
            #expect(first.error == nil, "\(String(describing: first.error))")
            let requests = try fixture.requests(after: mark)
            print("sync_matter, first sync: \(requests.count) requests (\(requests.joined(separator: ", ")))")
            let result = try #require(first.result)
            #expect(result["matter"] as? String == "created")
            #expect(result["link_status"] as? String == "confirmed")
            #expect((result["contact"] as? [String: Any])?["linked_by"] as? String == "created")
            #expect(result["documents"] as? [String: Any] != nil)

            let contacts = try fixture.contacts(externalSystemID: client)
            try #require(contacts.count == 1)
            #expect(contacts[0].person?.lastName == "Lovelace")
            #expect(contacts[0].person?.email == "ada.lovelace@example.test")
            let matters = try fixture.matters(externalSystemID: matter)
            try #require(matters.count == 1)
            let made = matters[0]
            #expect(made.number == "CH-0042")
            #expect(made.description == "Lovelace v. Lovelace")
            #expect(made.status == "Open")
            #expect(made.clients?.map(\.id) == [contacts[0].id])
            #expect(result["smokeball_matter_id"] as? String == made.id)
            let types = try fixture.flow.tokens.withAccess(UserScope(userID: fixture.flow.firm.admin)) {
                try $0.matterTypes(name: "Divorce", category: "Family Law", access: $1)
            }
            #expect(types.first { $0.id == made.matterType?.id }?.name == "Divorce")

            let clientRow = try fixture.row("clients", client)
            #expect(try clientRow.optionalString("smokeball_contact_id") == contacts[0].id)
            #expect(try clientRow.optionalString("smokeball_contact_linked_by") == "created")
            let matterRow = try fixture.row("matters", matter)
            #expect(try matterRow.optionalString("smokeball_matter_id") == made.id)
            #expect(try matterRow.optionalString("smokeball_link_status") == "confirmed")
            #expect(try matterRow.optionalDate("smokeball_synced_at") != nil)
            // The recorded RequestId is the one the create sent.
            let post = try fixture.sandbox.requestLog().first {
                $0["method"] as? String == "POST" && $0["path"] as? String == "/matters"
            }
            #expect(try matterRow.optionalString("smokeball_request_id") == post?["request_id"] as? String)
            #expect(try fixture.history(matter) == ["contact.created success", "matter.created success"])

            let again = try fixture.logMark()
            let second = try fixture.syncMatter(matter)
            #expect(second.error == nil)
            #expect(second.result?["matter"] as? String == "unchanged")
            let secondRequests = try fixture.requests(after: again)
            print("sync_matter, second sync: \(secondRequests.count) requests (\(secondRequests))")
            #expect(secondRequests.filter { !$0.hasPrefix("GET ") }.isEmpty)
            #expect(try fixture.contacts(externalSystemID: client).count == 1)
            #expect(try fixture.matters(externalSystemID: matter).count == 1)
            #expect(try fixture.history(matter).last == "matter.skipped skipped")
        }
    }

    @Test("a client whose email matches an existing contact (ignoring case) is linked without a create")
    func emailMatch() throws {
        try MatterSyncFixture.with { fixture in
            let existing = try fixture.sandboxContact([
                "firstName": "Ada", "lastName": "Byron", "email": "Ada.Lovelace@Example.TEST",
            ])
            // A wildcard in the address must not widen the match.
            _ = try fixture.sandboxContact(["firstName": "Ade", "lastName": "X", "email": "abe@example.test"])
            let client = try fixture.client(email: "ada.lovelace@example.test")
            let starred = try fixture.client(first: "Star", last: "Red", email: "a*e@example.test")
            let matter = try fixture.matter(client: client)
            let other = try fixture.matter(client: starred, number: "CH-0002")
            let mark = try fixture.logMark()
            let run = try fixture.syncMatter(matter)
            #expect(run.error == nil)
            #expect(
                (run.result?["contact"] as? [String: Any])?["linked_by"] as? String == "email")
            #expect(try fixture.row("clients", client).optionalString("smokeball_contact_id") == existing)
            #expect(!(try fixture.requests(after: mark)).contains { $0.hasPrefix("POST /contacts") })
            #expect(try fixture.history(matter).first == "contact.linked success")
            #expect(try fixture.sandboxMatters().first?.clients?.map(\.id) == [existing])

            let starredRun = try fixture.syncMatter(other)
            #expect((starredRun.result?["contact"] as? [String: Any])?["linked_by"] as? String == "created")
            #expect(try fixture.contacts(externalSystemID: starred).count == 1)
        }
    }

    @Test("a client without email is linked by phone and exact last name")
    func phoneAndLastName() throws {
        try MatterSyncFixture.with { fixture in
            // Same phone, and a name the search's `name:*Hopper` also finds, but another last name.
            _ = try fixture.sandboxContact([
                "firstName": "Ann", "lastName": "McHopper", "phone": ["areaCode": "555", "number": "010-0100"],
            ])
            let right = try fixture.sandboxContact([
                "firstName": "Grace", "lastName": "Hopper", "phone": ["areaCode": "555", "number": "010-0100"],
            ])
            let client = try fixture.client(first: "G.", last: "HOPPER", phone: "(555) 010-0100")
            let matter = try fixture.matter(client: client)
            let mark = try fixture.logMark()
            let run = try fixture.syncMatter(matter)
            #expect(run.error == nil)
            #expect((run.result?["contact"] as? [String: Any])?["linked_by"] as? String == "phone_last_name")
            #expect(try fixture.row("clients", client).optionalString("smokeball_contact_id") == right)
            #expect(
                try fixture.row("clients", client).optionalString("smokeball_contact_linked_by") == "phone_last_name")
            #expect(!(try fixture.requests(after: mark)).contains { $0.hasPrefix("POST /contacts") })
        }
    }

    @Test("a client without email or phone is created without a search")
    func noEmailNoPhone() throws {
        try MatterSyncFixture.with { fixture in
            let client = try fixture.client()
            let matter = try fixture.matter(client: client)
            let mark = try fixture.logMark()
            #expect(try fixture.syncMatter(matter).error == nil)
            #expect(try fixture.requests(after: mark).first == "POST /contacts 202")
            #expect(try fixture.contacts(externalSystemID: client).count == 1)
        }
    }

    @Test("an open contact intent is resolved before any create: its answered id, a wait, or abandoned once settled")
    func openContactIntents() throws {
        try MatterSyncFixture.with { fixture in
            func intent(_ client: UUID, externalID: String?, age: String) throws {
                try fixture.seed.asFirm(fixture.firm) {
                    try $0.execute(
                        """
                        INSERT INTO smokeball_sync_intents (firm_id, resource, local_id, request_id,
                            external_system_id, external_id, state, created_at)
                        VALUES ($1, 'contact', $2, 'earlier-request', $3, $4, $5, now() - $6::interval)
                        """,
                        [
                            fixture.firm, client, client.uuidString.lowercased(), externalID,
                            externalID == nil ? "intended" : "accepted", age,
                        ])
                }
            }
            // Answered before the crash: that contact, no search, no create.
            let made = try fixture.sandboxContact(["firstName": "Made", "lastName": "Before"])
            let answered = try fixture.client(email: "answered@example.test")
            try intent(answered, externalID: made, age: "1 second")
            var mark = try fixture.logMark()
            let first = try fixture.syncMatter(try fixture.matter(client: answered))
            #expect((first.result?["contact"] as? [String: Any])?["id"] as? String == made)
            #expect(!(try fixture.requests(after: mark)).contains { $0.contains("/contacts") })

            // Just sent and not listed yet: wait, create nothing.
            let young = try fixture.client(email: "young@example.test")
            try intent(young, externalID: nil, age: "0 seconds")
            mark = try fixture.logMark()
            // One attempt only, so that its retry does not come before the next case's job.
            let waiting = try fixture.syncMatter(try fixture.matter(client: young, number: "Y-1"), maxAttempts: 1)
            #expect(waiting.error?.message == "waiting for Smokeball to process an earlier request")
            #expect(waiting.error?.retryable == true)
            #expect(try fixture.requests(after: mark).filter { $0.hasPrefix("POST") }.isEmpty)

            // Older than the settle time and not listed: never made, so made now, once.
            let old = try fixture.client(email: "old@example.test")
            try intent(old, externalID: nil, age: "1 hour")
            let settled = try fixture.syncMatter(try fixture.matter(client: old, number: "O-1"))
            #expect((settled.result?["contact"] as? [String: Any])?["linked_by"] as? String == "created")
            #expect(try fixture.contacts(externalSystemID: old).count == 1)
            let states = try fixture.seed.connection.execute(
                "SELECT state FROM smokeball_sync_intents WHERE local_id = $1 ORDER BY created_at", [old]
            ).rows.map { try $0.string("state") }
            #expect(states == ["abandoned", "done"])
        }
    }

    @Test("a storm of 429s is retried by the client, then fails the attempt as retryable")
    func tooManyRequests() throws {
        try MatterSyncFixture.with { fixture in
            let client = try fixture.client(email: "storm@example.test")
            let matter = try fixture.matter(client: client)
            try fixture.sandbox.addFault(["path_prefix": "/contacts", "status": 429])
            let mark = try fixture.logMark()
            let run = try fixture.syncMatter(matter)
            try fixture.sandbox.clearFaults()
            #expect(run.status == .pending)
            #expect(run.error?.retryable == true)
            #expect(
                run.error?.message
                    == "Smokeball kept answering 429 Too Many Requests (HTTP 429) while syncing the contact")
            #expect(try fixture.requests(after: mark).filter { $0 == "GET /contacts 429" }.count == 4)
            #expect(try fixture.runNext(SyncJobs.syncMatter).status == .succeeded)
        }
    }

    @Test("a change in CaseHug is sent as a PATCH of only the changed fields")
    func patchOnlyChangedFields() throws {
        try MatterSyncFixture.with { fixture in
            let client = try fixture.client(email: "patch@example.test")
            let matter = try fixture.matter(client: client, title: "Before", number: "CH-0100")
            #expect(try fixture.syncMatter(matter).error == nil)
            let smokeballID = try #require(try fixture.row("matters", matter).optionalString("smokeball_matter_id"))
            // A firm user sets the status in Smokeball; a PATCH carrying status would undo it.
            let changed = try fixture.sandbox.service.send(
                "POST", "/_sandbox/accounts/\(fixture.sandbox.accountID)/matters/\(smokeballID)/status",
                body: SmokeballSandbox.json(["status": "Pending"]), contentType: "application/json",
                base: fixture.sandbox.url)
            try #require(changed.status == 200)
            try fixture.seed.connection.execute("UPDATE matters SET title = 'After' WHERE id = $1", [matter])
            let mark = try fixture.logMark()
            let run = try fixture.syncMatter(matter)
            #expect(run.error == nil)
            #expect(run.result?["matter"] as? String == "updated")
            let requests = try fixture.requests(after: mark).filter { !$0.hasPrefix("GET ") }
            #expect(requests == ["PATCH /matters/\(smokeballID) 202"])
            let now = try #require(try fixture.matters(externalSystemID: matter).first)
            #expect(now.description == "After")
            #expect(now.number == "CH-0100")
            #expect(now.status == "Pending")
            let sent = try fixture.row("matters", matter).json("smokeball_sent") as? [String: Any]
            #expect(sent?["description"] as? String == "After")
            #expect(try fixture.history(matter).last == "matter.updated success")
        }
    }

    @Test("the PATCH holds the fields that differ, null for a removed one, and clientRole only with a new type")
    func patchBody() {
        let sent: [String: SentValue] = [
            "number": .text("A-1"), "description": .text("T"), "matterTypeId": .text("t1"), "clientRole": .text("R"),
            "status": .text("Open"),
        ]
        var desired = sent
        desired["number"] = nil
        desired["status"] = .text("Closed")
        desired["clientRole"] = .text("Other")
        #expect(MatterSync.patch(from: sent, to: desired) == ["number": .null, "status": .text("Closed")])
        desired["matterTypeId"] = .text("t2")
        desired["clientRole"] = .text("R")
        #expect(
            MatterSync.patch(from: sent, to: desired) == [
                "number": .null, "status": .text("Closed"), "matterTypeId": .text("t2"), "clientRole": .text("R"),
            ])
        #expect(MatterSync.patch(from: sent, to: sent).isEmpty)
    }

    @Test("Smokeball 5xx fails the attempt as retryable and the next attempt succeeds with one of each")
    func serverErrorThenSuccess() throws {
        try MatterSyncFixture.with { fixture in
            let client = try fixture.client(email: "flaky@example.test")
            let matter = try fixture.matter(client: client)
            // The create itself fails: the intent stays open (it may have been processed).
            try fixture.sandbox.addFault(["path_prefix": "/matters", "status": 503])
            let first = try fixture.syncMatter(matter)
            #expect(first.error?.retryable == true)
            #expect(first.status == .pending)
            #expect(first.error?.message.contains("HTTP 503") == true)
            try fixture.sandbox.clearFaults()
            // Within the settle time the re-run waits rather than create a second matter.
            let (attempt, waits) = try fixture.runPastSettleTime(SyncJobs.syncMatter)
            print("5xx then success: \(waits) waiting attempt(s) before the settle time passed")
            #expect(attempt.result?["matter"] as? String == "created")
            #expect(try fixture.matters(externalSystemID: matter).count == 1)
            #expect(try fixture.contacts(externalSystemID: client).count == 1)
        }
    }

    @Test("a connection dropped during the matter create is retried once settled, and makes one matter")
    func droppedConnectionThenSuccess() throws {
        try MatterSyncFixture.with { fixture in
            let client = try fixture.client(email: "dropped@example.test")
            let matter = try fixture.matter(client: client)
            // The create's connection drops: it may have been processed, so the client does not
            // send it again, and the attempt fails with the intent left open.
            try fixture.sandbox.addFault(["path_prefix": "/matters", "drop_connection": true])
            let first = try fixture.syncMatter(matter)
            #expect(first.error?.retryable == true)
            #expect(first.status == .pending)
            try fixture.sandbox.clearFaults()
            let attempt = try fixture.runPastSettleTime(SyncJobs.syncMatter).attempt
            #expect(attempt.result?["matter"] as? String == "created")
            #expect(try fixture.matters(externalSystemID: matter).count == 1)
            #expect(try fixture.contacts(externalSystemID: client).count == 1)
        }
    }

    @Test("a Smokeball that keeps failing makes the job dead with a readable message and no personal data")
    func permanentServerError() throws {
        try MatterSyncFixture.with { fixture in
            let client = try fixture.client(
                first: "Secret", last: "Person", email: "secret.person@example.test", phone: "555 123 4567")
            let matter = try fixture.matter(client: client, title: "Private title")
            try fixture.sandbox.addFault(["path_prefix": "/contacts", "status": 500])
            _ = try fixture.syncMatter(matter, maxAttempts: 2)
            let last = try fixture.runNext(SyncJobs.syncMatter)
            #expect(last.status == .dead)
            let message = try #require(last.error?.description)
            #expect(message == "smokeball: Smokeball is unavailable (HTTP 500) while syncing the contact")
            for secret in ["Secret", "Person", "secret.person", "4567", "Private"] {
                #expect(!message.contains(secret))
            }
            #expect(try fixture.history(matter) == ["contact.failed failed"])
            try fixture.sandbox.clearFaults()
            #expect(try fixture.sandboxContacts().isEmpty)
        }
    }

    @Test("a firm that is not connected gets a dead job that says so")
    func notConnected() throws {
        try MatterSyncFixture.with { fixture in
            let other = fixture.flow.otherFirm
            let client = try fixture.client(firm: other.id, email: "b@example.test")
            let matter = try fixture.matter(firm: other.id, client: client)
            let mark = try fixture.logMark()
            let run = try fixture.syncMatter(matter, as: other.admin)
            #expect(run.status == .dead)
            #expect(run.error?.message == "Smokeball is not connected for this firm")
            #expect(try fixture.requests(after: mark).isEmpty)
        }
    }

    @Test("a case type Smokeball has no type for fails the matter with the mapping message, and the job is dead")
    func matterTypeNotFound() throws {
        try MatterSyncFixture.with { fixture in
            try fixture.seed.connection.execute(
                """
                INSERT INTO case_types (key, practice_area, display_name, smokeball_category, smokeball_matter_type,
                                        sort_order)
                VALUES ('test_unmapped', 'family_law', 'Unmapped Thing', 'No Such Category', 'No Such Type', 99)
                """)
            let client = try fixture.client(email: "unmapped@example.test")
            let matter = try fixture.matter(client: client, caseType: "test_unmapped")
            let run = try fixture.syncMatter(matter)
            #expect(run.status == .dead)
            #expect(run.error?.message == "configure a custom mapping for Unmapped Thing")
            let failed = try fixture.seed.connection.execute(
                "SELECT error_message FROM integration_sync_logs WHERE matter_id = $1 AND action = 'matter.failed'",
                [matter]
            ).single()
            #expect(try failed.optionalString("error_message") == "configure a custom mapping for Unmapped Thing")
            #expect(try fixture.matters(externalSystemID: matter).isEmpty)
            #expect(try fixture.row("matters", matter).optionalString("smokeball_matter_id") == nil)
        }
    }

    @Test("a job cannot sync another firm's matter: it is not found and nothing reaches Smokeball")
    func anotherFirmsMatter() throws {
        try MatterSyncFixture.with { fixture in
            // Firm B is connected too (to its own Smokeball account), so the refusal is row-level
            // security's, not the connection's.
            let other = fixture.flow.otherFirm
            let account = try fixture.sandbox.service.send(
                "POST", "/_sandbox/accounts",
                body: SmokeballSandbox.json([
                    "name": "Firm B Law", "region": "US",
                    "users": [["email": "b@firm-b.test", "password": "firm-b-password"]],
                ]), contentType: "application/json", base: fixture.sandbox.url)
            try #require(account.status == 201)
            let signedIn = try fixture.sandbox.signIn(
                authorizeURL: try fixture.flow.start(as: other.admin), email: "b@firm-b.test",
                password: "firm-b-password")
            let landing = try ConnectionFlow.landing(fixture.flow.arrive(signedIn, cookieUser: other.admin))
            try #require(landing["smokeball"] == "connected", "\(landing)")
            let client = try fixture.client(email: "a@example.test")
            let matter = try fixture.matter(client: client)
            let mark = try fixture.logMark()
            let run = try fixture.syncMatter(matter, as: other.admin)
            #expect(run.status == .dead)
            #expect(run.error?.message == "the matter was not found")
            #expect(try fixture.requests(after: mark).isEmpty)
            #expect(try fixture.row("matters", matter).optionalString("smokeball_matter_id") == nil)
            #expect(try fixture.row("clients", client).optionalString("smokeball_contact_id") == nil)
        }
    }

    @Test("a bulk sync goes through every matter with progress, records a failure and goes on; a re-run is cheap")
    func bulkSync() throws {
        try MatterSyncFixture.with { fixture in
            try fixture.seed.connection.execute(
                """
                INSERT INTO case_types (key, practice_area, display_name, smokeball_category, smokeball_matter_type,
                                        sort_order)
                VALUES ('test_unmapped', 'family_law', 'Unmapped Thing', 'No Such Category', 'No Such Type', 99)
                """)
            var matters: [UUID] = []
            for index in 0..<4 {
                let client = try fixture.client(first: "C\(index)", last: "L\(index)", email: "c\(index)@example.test")
                matters.append(
                    try fixture.matter(
                        client: client, title: "M\(index)", number: "B-\(index)",
                        caseType: index == 2 ? "test_unmapped" : "divorce_standard"))
            }
            let mark = try fixture.logMark()
            _ = try fixture.enqueue(
                SyncJobs.syncMatters, key: SyncJobs.allMattersKey, payload: BulkSyncPayload.everyMatter)
            let run = try fixture.runNext(SyncJobs.syncMatters)
            #expect(run.error == nil)
            #expect(run.progress == JobProgress(done: 4, total: 4, failed: 1))
            let result = try #require(run.result)
            #expect(result["failed"] as? Int == 1)
            let outcomes = try #require(result["matters"] as? [[String: Any]])
            #expect(outcomes.map { $0["matter_id"] as? String } == matters.map { $0.uuidString.lowercased() })
            #expect(outcomes.map { $0["status"] as? String } == ["created", "created", "failed", "created"])
            #expect(outcomes[2]["error"] as? String == "configure a custom mapping for Unmapped Thing")
            print("sync_matters, 4 matters (one failing): \(try fixture.requests(after: mark).count) requests")

            let again = try fixture.logMark()
            _ = try fixture.enqueue(
                SyncJobs.syncMatters, key: nil, payload: BulkSyncPayload(matterIDs: [matters[0], matters[1]]))
            let rerun = try fixture.runNext(SyncJobs.syncMatters)
            let statuses = (rerun.result?["matters"] as? [[String: Any]])?.map { $0["status"] as? String }
            #expect(statuses == ["unchanged", "unchanged"])
            #expect(try fixture.requests(after: again).filter { !$0.hasPrefix("GET ") }.isEmpty)
        }
    }

    @Test("a bulk sync asked to stop ends between matters, to go on at its next attempt")
    func bulkSyncStops() throws {
        try MatterSyncFixture.with { fixture in
            let client = try fixture.client(email: "stop@example.test")
            let matter = try fixture.matter(client: client)
            _ = try fixture.enqueue(SyncJobs.syncMatters, key: nil, payload: BulkSyncPayload(matterIDs: [matter]))
            let job = try #require(try fixture.queue.claim(kinds: [SyncJobs.syncMatters], leaseSeconds: 60))
            let context = JobContext(
                scope: JobScope(jobID: job.id, leaseID: job.leaseID), database: fixture.work, log: Logger(route: "test")
            )
            context.markStopping()
            let mark = try fixture.logMark()
            #expect(throws: BulkSyncJob.stopped) { try fixture.handler(SyncJobs.syncMatters).run(job, context) }
            #expect(try fixture.requests(after: mark).isEmpty)
            #expect(BulkSyncJob.stopped.retryable)
        }
    }

    @Test(
        "pull_matters lists the firm's Smokeball matters with the CaseHug matter each is linked to, and links nothing")
    func pullMatters() throws {
        try MatterSyncFixture.with { fixture in
            let client = try fixture.client(email: "pull@example.test")
            let synced = try fixture.matter(client: client)
            #expect(try fixture.syncMatter(synced).error == nil)
            let unlinked = try fixture.matter(client: client, title: "Made in Smokeball", number: "P-2")
            // Made in Smokeball by another program naming the CaseHug matter.
            let syncedRow = try fixture.row("matters", synced)
            let sent = try #require(try syncedRow.json("smokeball_sent") as? [String: Any])
            var body = sent
            body["externalSystemId"] = unlinked.uuidString.lowercased()
            body["number"] = "P-2"
            let data = try JSONSerialization.data(withJSONObject: body)
            try fixture.flow.tokens.withAccess(UserScope(userID: fixture.flow.firm.admin)) { client, access in
                _ = try client.call("POST", "/matters", body: [UInt8](data), access: access)
            }
            let foreign = try fixture.sandbox.store.insertMatter(accountID: fixture.sandbox.accountID)
            _ = try fixture.enqueue(SyncJobs.pullMatters, key: SyncJobs.firmKey, payload: [String: String]())
            let run = try fixture.runNext(SyncJobs.pullMatters)
            let result = try #require(run.result)
            #expect(result["total"] as? Int == 3)
            #expect(result["linked"] as? Int == 2)
            let items = try #require(result["matters"] as? [[String: Any]])
            let byID = Dictionary(uniqueKeysWithValues: items.map { ($0["smokeball_matter_id"] as? String ?? "", $0) })
            let syncedID = try #require(try syncedRow.optionalString("smokeball_matter_id"))
            #expect(byID[syncedID]?["casehug_matter_id"] as? String == synced.uuidString.lowercased())
            #expect(byID[syncedID]?["number"] as? String == "CH-0001")
            #expect(byID[syncedID]?["status"] as? String == "Open")
            #expect(byID[foreign.uuidString.lowercased()]?["casehug_matter_id"] is NSNull)
            #expect(items.contains { $0["casehug_matter_id"] as? String == unlinked.uuidString.lowercased() })
            // Read-only.
            #expect(try fixture.row("matters", unlinked).optionalString("smokeball_matter_id") == nil)
        }
    }
}
