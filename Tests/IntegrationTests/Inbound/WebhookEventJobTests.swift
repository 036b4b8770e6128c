import FastCGI
import Foundation
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

/// The sandbox's recorded events (`sb_events`) stored as the webhooks route stores deliveries
/// and processed by `process_webhook_event` run here on events claimed from the real event queue
/// (migration 045), as the worker role, against the real sandbox.
struct WebhookEventRig {
    var fixture: MatterSyncFixture

    var flow: ConnectionFlow { fixture.flow }
    var accountID: String { flow.sandbox.accountID }

    static func with(_ body: (inout WebhookEventRig) throws -> Void) throws {
        try MatterSyncFixture.with { fixture in
            var rig = WebhookEventRig(fixture: fixture)
            try body(&rig)
        }
    }

    /// A CaseHug matter synced to Smokeball (created there and linked): its id and Smokeball's.
    func syncedMatter() throws -> (matter: UUID, smokeball: String, client: UUID) {
        let client = try fixture.client(email: "ada@example.test", phone: "555 0100")
        let matter = try fixture.matter(client: client)
        let attempt = try fixture.syncMatter(matter)
        try #require(attempt.status == .succeeded, "\(String(describing: attempt.error))")
        let smokeballID = try #require(try fixture.row("matters", matter).optionalString("smokeball_matter_id"))
        return (matter, smokeballID, client)
    }

    // MARK: Events

    /// The id of the newest event the sandbox recorded for the account.
    func eventMark() throws -> Int64 {
        try Connection(url: flow.sandbox.store.url).execute(
            "SELECT coalesce(max(id), 0)::int8 AS id FROM sb_events WHERE account_id = $1::uuid", [accountID]
        ).single().int("id")
    }

    struct SandboxEvent {
        let id: Int64
        let type: String
        let requestID: String?
        let payload: String
    }

    /// The events the sandbox recorded after `mark`, oldest first (what it would deliver).
    func events(after mark: Int64, types: Set<String>? = nil) throws -> [SandboxEvent] {
        try Connection(url: flow.sandbox.store.url).execute(
            """
            SELECT id, type, request_id, payload::text AS payload FROM sb_events
            WHERE account_id = $1::uuid AND id > $2 ORDER BY id
            """, [accountID, mark]
        ).rows.map {
            SandboxEvent(
                id: try $0.int("id"), type: try $0.string("type"), requestID: try $0.optionalString("request_id"),
                payload: try $0.string("payload"))
        }.filter { types?.contains($0.type) ?? true }
    }

    /// Stores the event as the webhooks route does (the row, which is its own work item); a
    /// `copy` is a redelivery that escaped the dedupe key. Its id.
    @discardableResult
    func store(_ event: SandboxEvent, copy: Int = 0, requestID: String? = nil) throws -> UUID {
        let payload = (try? JSONSerialization.jsonObject(with: Data(event.payload.utf8))) as? [String: Any] ?? [:]
        let resourceType = event.type.split(separator: ".").first.map(String.init)
        let resourceID = (payload["id"] as? String) ?? (payload["resourceId"] as? String)
        // A change a firm user made carries no RequestId: the delivery gets a new one.
        let request = requestID ?? event.requestID ?? UUID().uuidString.lowercased()
        return try flow.database.transaction { connection in
            _ = try Tenancy.enter(connection, userID: flow.firm.admin)
            let id = try connection.execute(
                """
                INSERT INTO smokeball_webhook_events
                    (firm_id, event_type, resource_type, resource_id, payload, smokeball_request_id, dedupe_key)
                VALUES (app_current_firm(), $1, $2, $3, $4::jsonb, $5, $6) RETURNING id
                """,
                [
                    event.type, resourceType, resourceID, SQLValue.json(event.payload), request,
                    "sb:\(event.id):\(copy)",
                ]
            ).single().uuid("id")
            return id
        }
    }

    /// Processes every due event here, claimed from the event queue as the worker would; how many ran.
    @discardableResult
    func processAll() throws -> Int {
        var count = 0
        while let job = try fixture.queue.claimWebhookEvent(leaseSeconds: 60) {
            let context = JobContext(
                scope: JobScope(jobID: job.id, leaseID: job.leaseID, queue: job.queue), database: fixture.work,
                log: Logger(route: "test"))
            do {
                let value = try WebhookEventJob(tokens: fixture.tokens).run(job, context)
                let json = try value.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
                _ = try fixture.queue.finish(job, resultJSON: json)
            } catch {
                _ = try fixture.queue.fail(
                    job, error: JobError.readable(error), backoff: JobBackoff(baseSeconds: 3600, capSeconds: 3600))
            }
            count += 1
        }
        return count
    }

    func eventStatus(_ id: UUID) throws -> String? {
        try flow.seed.connection.execute("SELECT status FROM smokeball_webhook_events WHERE id = $1", [id])
            .single().optionalString("status")
    }

    // MARK: Smokeball, as a firm user

    func setStatus(_ smokeballID: String, _ status: String) throws {
        let answer = try flow.sandbox.service.send(
            "POST", "/_sandbox/accounts/\(accountID)/matters/\(smokeballID)/status",
            body: SmokeballSandbox.json(["status": status]), contentType: "application/json", base: flow.sandbox.url)
        try #require(answer.status == 200, "status \(answer.status)")
    }

    func editContact(_ contactID: String, _ person: [String: Any]) throws {
        let answer = try flow.sandbox.service.send(
            "POST", "/_sandbox/accounts/\(accountID)/contacts/\(contactID)",
            body: SmokeballSandbox.json(["changes": ["person": person]]), contentType: "application/json",
            base: flow.sandbox.url)
        try #require(answer.status == 200, "status \(answer.status)")
    }

    func matterStatus(_ id: UUID) throws -> String { try fixture.row("matters", id).string("status") }
}

@Suite("Processing webhook events")
struct WebhookEventJobTests {
    @Test("the CaseHug matter's status follows each Smokeball status, re-read rather than taken from the payload")
    func statusFollows() throws {
        try WebhookEventRig.with { rig in
            let (matter, smokeballID, _) = try rig.syncedMatter()
            let expected = [
                ("Closed", "closed"), ("Open", "active"), ("Cancelled", "closed"), ("Pending", "active"),
                ("Deleted", "closed"),
            ]
            for (status, caseHug) in expected {
                let mark = try rig.eventMark()
                try rig.setStatus(smokeballID, status)
                let events = try rig.events(after: mark, types: ["matter.updated"])
                try #require(events.count == 1)
                let id = try rig.store(events[0])
                #expect(try rig.processAll() == 1)
                #expect(try rig.eventStatus(id) == "applied")
                #expect(try rig.matterStatus(matter) == caseHug, "Smokeball \(status)")
            }
            // The next sync sends no status back: Smokeball's is what was last sent.
            let mark = try rig.fixture.logMark()
            #expect(try rig.fixture.syncMatter(matter).status == .succeeded)
            #expect(try !rig.fixture.requests(after: mark).contains { $0.hasPrefix("PATCH") })
        }
    }

    @Test("events shuffled and delivered twice converge on the same end state as in order; an older re-read is stale")
    func outOfOrderConverges() throws {
        try WebhookEventRig.with { rig in
            let (matter, smokeballID, _) = try rig.syncedMatter()
            let mark = try rig.eventMark()
            for status in ["Closed", "Open", "Pending", "Closed"] { try rig.setStatus(smokeballID, status) }
            let events = try rig.events(after: mark, types: ["matter.updated", "matter.closed"])
            try #require(events.count >= 4)
            // Shuffled, each twice (copies that escaped the dedupe key), in a seeded order.
            var generator = SeededGenerator(seed: 13)
            let deliveries = (events.map { ($0, 0) } + events.map { ($0, 1) }).shuffled(using: &generator)
            let ids = try deliveries.map { try rig.store($0.0, copy: $0.1) }
            #expect(try rig.processAll() == ids.count)
            #expect(try rig.matterStatus(matter) == "closed")
            #expect(try ids.allSatisfy { try rig.eventStatus($0) == "applied" })

            // The state applied is versioned: a re-read older than it (a worker that read
            // before another applied a newer one) changes nothing.
            let applied = try #require(try rig.fixture.row("matters", matter).optionalString("smokeball_version_id"))
            let older = String(try #require(Int64(applied)) - 1)
            let outcome = try rig.flow.seed.asFirm(rig.fixture.firm) { connection in
                try WebhookEventJob.applyMatterState(
                    connection, smokeballID, WebhookEventJob.MatterState(versionId: older, status: "Open")
                ).result
            }
            #expect(outcome.status == .stale)
            #expect(try rig.matterStatus(matter) == "closed")
        }
    }

    @Test("an echo of our own create or update is marked echo and causes no re-read")
    func echoCausesNoReread() throws {
        try WebhookEventRig.with { rig in
            let mark = try rig.eventMark()
            let (matter, smokeballID, client) = try rig.syncedMatter()
            // Our update: a PATCH of the changed title.
            try rig.flow.seed.connection.execute("UPDATE matters SET title = 'Renamed' WHERE id = $1", [matter])
            #expect(try rig.fixture.syncMatter(matter).status == .succeeded)
            // And a PUT of the contact: the client's phone changed in CaseHug.
            try rig.flow.database.transaction { connection in
                _ = try Tenancy.enter(connection, userID: rig.flow.firm.admin)
                try connection.execute("UPDATE clients SET phone = '555 0142' WHERE id = $1", [client])
            }
            try rig.flow.seed.connection.execute("UPDATE jobs SET run_after = now() WHERE kind = 'push_contact'")
            let push = try #require(try rig.fixture.queue.claim(kinds: [PushContactJob.kind], leaseSeconds: 60))
            _ = try PushContactJob(tokens: rig.fixture.tokens).run(
                push,
                JobContext(
                    scope: JobScope(jobID: push.id, leaseID: push.leaseID), database: rig.fixture.work,
                    log: Logger(route: "test")))
            let ours = try rig.events(
                after: mark, types: ["matter.created", "matter.updated", "contact.created", "contact.updated"])
            try #require(ours.contains { $0.type == "matter.updated" })
            try #require(ours.contains { $0.type == "contact.updated" })
            let ids = try ours.map { try rig.store($0) }
            let log = try rig.fixture.logMark()
            #expect(try rig.processAll() == ids.count)
            #expect(try ids.allSatisfy { try rig.eventStatus($0) == "echo" })
            #expect(try rig.fixture.requests(after: log).isEmpty)

            // The same change from a firm user is re-read.
            let user = try rig.eventMark()
            try rig.setStatus(smokeballID, "Closed")
            let theirs = try rig.events(after: user, types: ["matter.updated"])
            let id = try rig.store(try #require(theirs.first))
            try rig.processAll()
            #expect(try rig.eventStatus(id) == "applied")
            #expect(try rig.fixture.requests(after: log) == ["GET /matters/\(smokeballID) 200"])
        }
    }

    @Test("contact.updated updates every linked client and enqueues no push back to Smokeball")
    func contactUpdated() throws {
        try WebhookEventRig.with { rig in
            let (_, _, client) = try rig.syncedMatter()
            let contactID = try #require(try rig.fixture.row("clients", client).optionalString("smokeball_contact_id"))
            let other = try rig.fixture.client(first: "Augusta", last: "King")
            try rig.flow.seed.connection.execute(
                "UPDATE clients SET smokeball_contact_id = $2, smokeball_contact_linked_by = 'email' WHERE id = $1",
                [other, contactID])
            let mark = try rig.eventMark()
            try rig.editContact(
                contactID,
                [
                    "firstName": "Augusta Ada", "lastName": "King", "email": "ada.king@example.test",
                    "phone": ["number": "555 0199"],
                ])
            let events = try rig.events(after: mark, types: ["contact.updated"])
            try #require(events.count == 1)
            let id = try rig.store(events[0])
            #expect(try rig.processAll() == 1)
            #expect(try rig.eventStatus(id) == "applied")
            for linked in [client, other] {
                let row = try rig.fixture.row("clients", linked)
                #expect(try row.string("first_name") == "Augusta Ada")
                #expect(try row.string("last_name") == "King")
                #expect(try row.optionalString("email") == "ada.king@example.test")
                #expect(try SmokeballContact.digits(row.optionalString("phone") ?? "") == "5550199")
            }
            let pushes = try rig.flow.seed.connection.execute(
                "SELECT count(*)::int8 AS n FROM jobs WHERE kind = 'push_contact'"
            ).single().int("n")
            #expect(pushes == 0)
        }
    }

    @Test(
        "a CaseHug edit still waiting to be pushed is kept when Smokeball's older contact arrives: the event is stale")
    func contactUpdatedKeepsAPendingCaseHugEdit() throws {
        try WebhookEventRig.with { rig in
            let (_, _, client) = try rig.syncedMatter()
            let contactID = try #require(try rig.fixture.row("clients", client).optionalString("smokeball_contact_id"))
            // Edited in CaseHug: the clients trigger enqueues its push, due in 2 seconds.
            try rig.flow.seed.asFirm(rig.fixture.firm) { connection in
                try connection.execute("UPDATE clients SET first_name = 'Ada CaseHug' WHERE id = $1", [client])
            }
            let pending = try rig.flow.seed.connection.execute(
                "SELECT count(*)::int8 AS n FROM jobs WHERE kind = 'push_contact' AND status = 'pending' AND key = $1",
                [SyncJobs.contactKey(client)]
            ).single().int("n")
            try #require(pending == 1)
            let mark = try rig.eventMark()
            try rig.editContact(contactID, ["firstName": "Ada Smokeball"])
            let events = try rig.events(after: mark, types: ["contact.updated"])
            try #require(events.count == 1)
            let id = try rig.store(events[0])
            #expect(try rig.processAll() == 1)
            #expect(try rig.eventStatus(id) == "stale")
            #expect(try rig.fixture.row("clients", client).string("first_name") == "Ada CaseHug")

            // Once the push is done (no push pending), Smokeball's edits apply again.
            try rig.flow.seed.connection.execute(
                "DELETE FROM jobs WHERE kind = 'push_contact' AND key = $1", [SyncJobs.contactKey(client)])
            let again = try rig.store(events[0], copy: 1)
            #expect(try rig.processAll() == 1)
            #expect(try rig.eventStatus(again) == "applied")
            #expect(try rig.fixture.row("clients", client).string("first_name") == "Ada Smokeball")
        }
    }

    @Test("an error event for a matter we created fails its history entry and link, and a re-sync creates it again")
    func errorEventForACreatedMatter() throws {
        try WebhookEventRig.with { rig in
            // A client linked to a contact Smokeball does not have: the create is accepted (202)
            // and fails later, as an `error` event with its RequestId.
            let client = try rig.fixture.client()
            try rig.flow.seed.connection.execute(
                "UPDATE clients SET smokeball_contact_id = $2, smokeball_contact_linked_by = 'email' WHERE id = $1",
                [client, UUID().uuidString.lowercased()])
            let matter = try rig.fixture.matter(client: client)
            let mark = try rig.eventMark()
            let first = try rig.fixture.syncMatter(matter)
            #expect(first.status == .pending)
            let failedID = try #require(try rig.fixture.row("matters", matter).optionalString("smokeball_matter_id"))
            let errors = try rig.events(after: mark, types: ["error"])
            try #require(errors.count == 1)
            let id = try rig.store(errors[0])
            #expect(try rig.processAll() == 1)
            #expect(try rig.eventStatus(id) == "applied")
            let row = try rig.fixture.row("matters", matter)
            #expect(try row.optionalString("smokeball_link_status") == "failed")
            let history = try rig.flow.seed.connection.execute(
                """
                SELECT error_message FROM integration_sync_logs
                WHERE matter_id = $1 AND action = 'matter.failed' AND external_id = $2
                """, [matter, failedID]
            ).rows
            try #require(history.count == 1)
            let message = try #require(try history[0].optionalString("error_message"))
            #expect(message.hasPrefix("Smokeball: ") && message.count > "Smokeball: ".count)

            // The firm fixes the client's link; the pending re-sync creates the matter again.
            try rig.flow.seed.connection.execute(
                "UPDATE clients SET smokeball_contact_id = NULL, smokeball_contact_linked_by = NULL WHERE id = $1",
                [client])
            let again = try rig.fixture.runNext(SyncJobs.syncMatter)
            #expect(again.status == .succeeded, "\(String(describing: again.error))")
            let relinked = try rig.fixture.row("matters", matter)
            #expect(try relinked.optionalString("smokeball_link_status") == "confirmed")
            #expect(try relinked.optionalString("smokeball_matter_id") != failedID)
            #expect(try rig.fixture.matters(externalSystemID: matter).count == 1)
        }
    }

    @Test("after the subscription is ensured a noop is requested, and its arrival is recorded")
    func noopArrival() throws {
        try WebhookEventRig.with { rig in
            let integration =
                "SELECT webhook_noop_sent_at, webhook_last_noop_at FROM firm_integrations WHERE firm_id = $1"
            let before = try rig.flow.seed.connection.execute(integration, [rig.fixture.firm]).single()
            #expect(try !before.isNull("webhook_noop_sent_at"))
            #expect(try before.isNull("webhook_last_noop_at"))
            let noops = try rig.events(after: 0, types: ["noop"])
            try #require(noops.count == 1)
            // The ask is recorded as of before it was made, so not after the sandbox created the
            // event (which it did before answering): an arrival processed before the answer
            // came back still counts as an answer to this ask.
            let created = try Connection(url: rig.flow.sandbox.store.url).execute(
                "SELECT created_at FROM sb_events WHERE id = $1", [noops[0].id]
            ).single().date("created_at")
            #expect(try before.date("webhook_noop_sent_at") <= created)
            let id = try rig.store(noops[0])
            #expect(try rig.processAll() == 1)
            #expect(try rig.eventStatus(id) == "applied")
            let after = try rig.flow.seed.connection.execute(integration, [rig.fixture.firm]).single()
            #expect(try !after.isNull("webhook_last_noop_at"))
        }
    }

    @Test("files.updated, memo.created, matter.created from Smokeball and unknown types are processed with no action")
    func otherTypesAreRecorded() throws {
        try WebhookEventRig.with { rig in
            let log = try rig.fixture.logMark()
            var ids: [UUID] = []
            for (index, type) in ["files.updated", "memo.created", "matter.created", "invoice.finalized"].enumerated() {
                ids.append(
                    try rig.store(
                        WebhookEventRig.SandboxEvent(
                            id: Int64(1_000_000 + index), type: type, requestID: nil,
                            payload: #"{"id": "\#(UUID().uuidString.lowercased())"}"#)))
            }
            #expect(try rig.processAll() == ids.count)
            #expect(try ids.allSatisfy { try rig.eventStatus($0) == "ignored" })
            #expect(try rig.fixture.requests(after: log).isEmpty)
        }
    }
}
