import FastCGI
import Foundation
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

/// A firm connected to the sandbox (the whole connect flow), a Smokeball contact made through
/// the API as the matter sync makes it, and a CaseHug client linked to it.
struct PushContactRig {
    let flow: ConnectionFlow
    let contactID: String
    let clientID: UUID

    var sandbox: SmokeballSandbox { flow.sandbox }
    var scope: UserScope { UserScope(userID: flow.firm.admin) }

    static let client = PushContactJob.Client(
        firstName: "Ada", lastName: "Lovelace", email: "ada@example.test", phone: "555 0100", contactID: nil)

    /// The firm entered this address in Smokeball; CaseHug has no addresses.
    static let address: [String: String] = [
        "addressLine1": "12 St James's Square", "city": "London", "zipCode": "SW1Y 4JH", "country": "United Kingdom",
    ]

    static func with(_ body: (PushContactRig) throws -> Void) throws {
        try ConnectionFlow.with { flow in
            try #require(try ConnectionFlow.landing(flow.connectFirm())["smokeball"] == "connected")
            let contactID = try Self.createContact(flow)
            let clientID = UUID()
            try flow.seed.asFirm(flow.firm.id) { connection in
                try connection.execute(
                    """
                    INSERT INTO clients (id, firm_id, first_name, last_name, email, phone, smokeball_contact_id,
                                         smokeball_contact_linked_by)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 'created')
                    """,
                    [
                        clientID, flow.firm.id, client.firstName, client.lastName, client.email, client.phone,
                        contactID,
                    ])
            }
            try body(PushContactRig(flow: flow, contactID: contactID, clientID: clientID))
        }
    }

    /// `POST /contacts` with the client's fields, then the firm adds an address in Smokeball.
    static func createContact(_ flow: ConnectionFlow) throws -> String {
        let body: [String: Any] = [
            "person": [
                "firstName": client.firstName, "lastName": client.lastName, "email": client.email ?? "",
                "phone": ["number": client.phone ?? ""],
            ]
        ]
        let id = try flow.tokens.withAccess(UserScope(userID: flow.firm.admin)) { smokeball, access in
            let answer = try smokeball.call("POST", "/contacts", body: try JSONWriter.encode(body), access: access)
            let link = try JSONSerialization.jsonObject(with: Data(answer.response.body)) as? [String: Any]
            return link?["id"] as? String
        }
        let contactID = try #require(id)
        let edit = try flow.sandbox.service.send(
            "POST", "/_sandbox/accounts/\(flow.sandbox.accountID)/contacts/\(contactID)",
            body: SmokeballSandbox.json(["changes": ["person": ["residentialAddress": address, "notes": "VIP"]]]),
            contentType: "application/json", base: flow.sandbox.url)
        try #require(edit.status == 200)
        return contactID
    }

    /// The contact as Smokeball answers it now.
    func contact() throws -> [String: Any] {
        try flow.tokens.withAccess(scope) { smokeball, access in
            let answer = try smokeball.call("GET", "/contacts/" + contactID, access: access)
            return try JSONSerialization.jsonObject(with: Data(answer.response.body)) as? [String: Any] ?? [:]
        }
    }

    var person: [String: Any] { get throws { try contact()["person"] as? [String: Any] ?? [:] } }

    /// The host app's change, as the app role for a standard user.
    func edit(_ sql: String, _ values: [any SQLValueConvertible] = []) throws {
        try flow.database.transaction { connection in
            _ = try Tenancy.enter(connection, userID: flow.firm.standard)
            try connection.execute(sql, [clientID] + values)
        }
    }

    /// Calls the partner made on the contact so far, by method.
    func contactRequests(_ method: String) throws -> Int {
        try sandbox.requestLog().filter {
            $0["method"] as? String == method && $0["path"] as? String == "/contacts/" + contactID
        }.count
    }

    /// The pending push for the client, enqueued as the trigger would (for tests that arrange
    /// the client without a change).
    func enqueuePush() throws {
        try flow.database.transaction { connection in
            _ = try Tenancy.enter(connection, userID: flow.firm.standard)
            try JobQueue.enqueue(
                connection, kind: PushContactJob.kind, key: SyncJobs.contactKey(clientID),
                payload: PushContactPayload(clientID: clientID))
        }
    }

    /// Claims the pending push (made due now) as a worker would and runs the handler in this
    /// process: its result, or what it threw.
    func runPush() throws -> Result<(any Encodable & Sendable)?, any Error> {
        try flow.seed.connection.execute("UPDATE jobs SET run_after = now() WHERE status = 'pending'")
        let worker = Database(url: sandbox.database.workerURL)
        let job = try #require(try JobQueue(database: worker).claim(kinds: [PushContactJob.kind], leaseSeconds: 60))
        let tokens = SmokeballTokenProvider(
            database: worker, vault: flow.vault, smokeball: flow.smokeball,
            rateLimit: PartnerRateLimit(
                database: worker, configuration: flow.smokeball, clientID: SmokeballSandbox.clientID))
        let context = JobContext(
            scope: JobScope(jobID: job.id, leaseID: job.leaseID), database: worker, log: Logger(route: "test"))
        return Result { try PushContactJob(tokens: tokens).run(job, context) }
    }

    /// The firm's history rows about contacts: action, matter id, external id, error.
    func history() throws -> [(action: String, matter: UUID?, external: String?, error: String?)] {
        try flow.seed.connection.execute(
            """
            SELECT action, matter_id, external_id, error_message FROM integration_sync_logs
            WHERE firm_id = $1 AND action LIKE 'contact.%' ORDER BY created_at, id
            """, [flow.firm.id]
        ).rows.map {
            (
                try $0.string("action"), try $0.optionalUUID("matter_id"), try $0.optionalString("external_id"),
                try $0.optionalString("error_message")
            )
        }
    }

    func pushJobs() throws -> [(status: String, error: String?)] {
        try flow.seed.connection.execute(
            "SELECT status, last_error FROM jobs WHERE kind = 'push_contact' ORDER BY created_at"
        ).rows.map { (try $0.string("status"), try $0.optionalString("last_error")) }
    }
}

@Suite struct PushContactJobTests {
    // MARK: What goes back to Smokeball

    static var firmsPerson: [String: Any] {
        [
            "title": "Countess", "firstName": "Ada", "lastName": "Lovelace", "email": "Ada@Example.test",
            "phone": ["areaCode": "555", "number": "0100"], "cell": ["number": "07700 900123"],
            "residentialAddress": PushContactRig.address, "notes": "VIP", "occupation": "Mathematician",
            "voiDetails": ["verified": true], "executionOptions": ["poaType": "General", "poaVoiDetails": ["x": 1]],
            "middleName": NSNull(),
        ]
    }

    @Test func thePersonSentKeepsEveryFieldTheFirmEnteredWithCaseHugsFieldsIn() throws {
        var client = PushContactRig.client
        client.phone = "(555) 0199"
        client.lastName = "King"
        let merged = try #require(PushContactJob.merged(Self.firmsPerson, with: client))
        #expect(merged.fields == ["lastName", "phone"])
        let person = merged.person
        #expect(person["lastName"] as? String == "King")
        #expect(person["firstName"] as? String == "Ada")
        // The whole number in `number`, the old area code cleared (a merging PUT would keep it).
        let phone = try #require(person["phone"] as? [String: Any])
        #expect(phone["number"] as? String == "(555) 0199")
        #expect(phone["areaCode"] is NSNull)
        // Everything else the firm has goes back as it is.
        #expect((person["residentialAddress"] as? [String: String]) == PushContactRig.address)
        #expect(person["notes"] as? String == "VIP")
        #expect(person["title"] as? String == "Countess")
        #expect(person["occupation"] as? String == "Mathematician")
        #expect((person["cell"] as? [String: String]) == ["number": "07700 900123"])
        #expect(person["email"] as? String == "Ada@Example.test")
        // Read-only (Person has them, PersonDto does not) and null fields are not sent.
        #expect(person["voiDetails"] == nil)
        #expect((person["executionOptions"] as? [String: String]) == ["poaType": "General"])
        #expect(person.keys.contains("middleName") == false)
    }

    @Test func aPersonThatAlreadyHasCaseHugsFieldsNeedsNoUpdate() {
        // Only formatting and the email's case differ.
        var client = PushContactRig.client
        client.email = "ada@example.TEST"
        client.phone = "555-0100"
        #expect(PushContactJob.merged(Self.firmsPerson, with: client) == nil)
    }

    @Test func aBlankEmailOrPhoneInCaseHugLeavesSmokeballsOwn() throws {
        var client = PushContactRig.client
        client.email = nil
        client.phone = "  "
        client.firstName = "Augusta"
        let merged = try #require(PushContactJob.merged(Self.firmsPerson, with: client))
        #expect(merged.fields == ["firstName"])
        #expect(merged.person["email"] as? String == "Ada@Example.test")
        #expect((merged.person["phone"] as? [String: String]) == ["areaCode": "555", "number": "0100"])
    }

    // MARK: Against the sandbox

    @Test("editing a linked client's phone in CaseHug updates the Smokeball contact with one PUT and keeps its address")
    func editingTheClientsPhoneUpdatesTheContact() throws {
        try PushContactRig.with { rig in
            // A burst of edits before any worker runs: one pending job, whatever the timing.
            for phone in ["555 0101", "555 0102", "555 0103"] {
                try rig.edit("UPDATE clients SET phone = $2 WHERE id = $1", [phone])
            }
            #expect(try rig.pushJobs().map(\.status) == ["pending"])
            let before = (get: try rig.contactRequests("GET"), put: try rig.contactRequests("PUT"))

            let worker = try KillableWorker(
                executable: "worker", arguments: ["--workers", "1"],
                environment: rig.sandbox.environment([
                    "DATABASE_URL": rig.sandbox.database.workerURL, "PATH": "/usr/bin:/bin",
                    "TOKEN_ENCRYPTION_KEY": Data(ConnectionFlow.key).base64EncodedString(),
                    "SMOKEBALL_WEBHOOK_URL": ConnectionFlow.redirects.webhookURL,
                ]))
            defer { try? worker.stop() }
            try Processes.waitFor("the push to finish", timeout: 60) {
                let statuses = try rig.pushJobs().map(\.status)
                return !statuses.contains("pending") && !statuses.contains("running")
            }
            #expect(try rig.pushJobs().map(\.status) == ["succeeded"], "\(worker.logText)")
            #expect(try rig.contactRequests("PUT") - before.put == 1)
            #expect(try rig.contactRequests("GET") - before.get == 1)

            let person = try rig.person
            #expect((person["phone"] as? [String: String]) == ["number": "555 0103"])
            #expect((person["residentialAddress"] as? [String: String]) == PushContactRig.address)
            #expect(person["notes"] as? String == "VIP")
            #expect(person["email"] as? String == PushContactRig.client.email)
            #expect(try rig.contact()["isDeleted"] as? Bool == false)

            let history = try rig.history()
            #expect(history.map(\.action) == ["contact.updated"])
            #expect(history.first?.matter == nil)
            #expect(history.first?.external == rig.contactID)
            // What the job wrote back (smokeball_synced_at) enqueued nothing more.
            #expect(try rig.pushJobs().count == 1)
            let synced = try rig.flow.seed.connection.execute(
                "SELECT smokeball_synced_at IS NOT NULL AS synced FROM clients WHERE id = $1", [rig.clientID]
            ).single().bool("synced")
            #expect(synced)
        }
    }

    @Test func aContactThatAlreadyMatchesGetsNoRequestBeyondTheGet() throws {
        try PushContactRig.with { rig in
            try rig.enqueuePush()
            let before = (get: try rig.contactRequests("GET"), put: try rig.contactRequests("PUT"))
            let result = try rig.runPush().get() as? PushContactJob.Result
            #expect(result?.outcome == .skipped)
            #expect(result?.reason == "unchanged")
            #expect(try rig.contactRequests("GET") - before.get == 1)
            #expect(try rig.contactRequests("PUT") - before.put == 0)
            #expect(try rig.history().map(\.action) == ["contact.skipped"])
        }
    }

    enum Gone: String, CaseIterable, CustomTestStringConvertible {
        /// Deleted by the firm in Smokeball (kept, `isDeleted`).
        case deleted
        /// No such contact (404).
        case missing

        var testDescription: String { rawValue }
    }

    @Test(arguments: Gone.allCases)
    func aContactGoneFromSmokeballFailsThePushForGoodWithAReadableMessage(_ gone: Gone) throws {
        try PushContactRig.with { rig in
            switch gone {
            case .deleted:
                try rig.flow.tokens.withAccess(rig.scope) { smokeball, access in
                    _ = try smokeball.call("DELETE", "/contacts/" + rig.contactID, access: access)
                }
                try rig.edit("UPDATE clients SET phone = '555 0104' WHERE id = $1")
            case .missing:
                try rig.flow.seed.connection.execute(
                    "UPDATE clients SET smokeball_contact_id = $2 WHERE id = $1",
                    [rig.clientID, UUID().uuidString.lowercased()])
                try rig.enqueuePush()
            }
            let puts = try rig.contactRequests("PUT")
            let outcome = try rig.runPush()
            guard case .failure(let error as JobError) = outcome else {
                Issue.record("expected a JobError, got \(outcome)")
                return
            }
            #expect(error.code.rawValue == "contact_deleted")
            #expect(error.retryable == false)
            #expect(error.message == PushContactJob.deletedMessage)
            #expect(try rig.contactRequests("PUT") == puts)
            let history = try rig.history()
            #expect(history.map(\.action) == ["contact.failed"])
            #expect(history.first?.error == PushContactJob.deletedMessage)
            #expect(history.first?.matter == nil)
        }
    }

    @Test func aFirmThatIsNotConnectedFailsThePushForGood() throws {
        try PushContactRig.with { rig in
            try rig.enqueuePush()
            try rig.flow.seed.connection.execute(
                "UPDATE firm_integrations SET is_active = false WHERE firm_id = $1", [rig.flow.firm.id])
            let outcome = try rig.runPush()
            guard case .failure(let error as JobError) = outcome else {
                Issue.record("expected a JobError, got \(outcome)")
                return
            }
            #expect(error.code.rawValue == "not_connected")
            #expect(error.retryable == false)
            #expect(try rig.history().map(\.action) == ["contact.failed"])
        }
    }
}
