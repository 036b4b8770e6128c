import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// Updates are eventually consistent like creates: with a write delay, a PATCH/PUT/DELETE is
/// answered 202 at once, checked at once (404, 400), and becomes readable — and recorded as an
/// event — only after the delay.
@Suite struct DelayedUpdatesTests {
    typealias F = SandboxFixture
    typealias M = MattersTests
    typealias C = ContactsTests

    /// Long, on the sandbox clock the tests move: a slow machine cannot outlast it between two calls.
    static let delay = 60_000
    static var seconds: TimeInterval { Double(delay) / 1000 }

    /// Steps the sandbox clock forward 5 s at a time until `done`, for at most three delays;
    /// answers the sandbox time since `start` when it held, nil if it never did.
    static func poll(_ fixture: F, since start: Date, _ done: () -> Bool) -> TimeInterval? {
        for _ in 0...(3 * delay / 5000) {
            if done() { return fixture.now.timeIntervalSince(start) }
            fixture.advance(by: 5)
        }
        return nil
    }

    static func pending(_ fixture: F) throws -> Int {
        try M.count(fixture, "SELECT count(*)::int AS n FROM sb_pending_updates")
    }

    /// A matter readable with the delay set: created, then the clock moved past the delay.
    static func matter(_ fixture: F, _ access: String) throws -> String {
        let client = try M.contact(fixture, "Avery Smith")
        let type = try M.matterType(fixture, "Divorce")
        let id = try M.create(fixture, access, M.body(type: type, clients: [client], ["description": "before"]))
        fixture.advance(by: seconds + 1)
        #expect(fixture.api("GET", "/matters/\(id)", token: access).status == .ok)
        return id
    }

    @Test func aMatterPatchIsReadableAndAnnouncedOnlyAfterTheDelay() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        #expect(M.registerClient(fixture, writeDelayMilliseconds: Self.delay).status == .created)
        let (access, _) = fixture.connect()
        let id = try Self.matter(fixture, access)
        let before = M.matter(fixture, access, id)

        let accepted = fixture.now
        let patched = M.send(
            fixture, "PATCH", "/matters/\(id)", access, json: ["description": "after"], requestID: "p-1")
        #expect(patched.status == .accepted)
        #expect(M.spec.problems(F.json(patched), schema: "Link") == [])
        // Right after the 202: the old value, the old version, no event yet.
        #expect(M.matter(fixture, access, id)["description"] as? String == "before")
        #expect(try fixture.events().map(\.type) == ["matter.created"])

        let waited = Self.poll(fixture, since: accepted) {
            M.matter(fixture, access, id)["description"] as? String == "after"
        }
        let elapsed = try #require(waited)
        #expect(elapsed >= Self.seconds)
        let after = M.matter(fixture, access, id)
        #expect(after["versionId"] as? String != before["versionId"] as? String)
        let events = try fixture.events()
        #expect(events.map(\.type) == ["matter.created", "matter.updated"])
        #expect(events.last?.requestID == "p-1")
        #expect(try Self.pending(fixture) == 0)
    }

    @Test func dueUpdatesAreAppliedByTheDispatcherWithoutAnyRead() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        #expect(M.registerClient(fixture, writeDelayMilliseconds: Self.delay).status == .created)
        let (access, _) = fixture.connect()
        let id = try Self.matter(fixture, access)
        #expect(M.send(fixture, "PATCH", "/matters/\(id)", access, json: ["status": "Closed"]).status == .accepted)
        #expect(fixture.admin("POST", "/_sandbox/webhooks/deliver").status == .ok)
        #expect(try fixture.events().map(\.type) == ["matter.created"])
        fixture.advance(by: Self.seconds)
        #expect(fixture.admin("POST", "/_sandbox/webhooks/deliver").status == .ok)
        #expect(try fixture.events().map(\.type) == ["matter.created", "matter.updated", "matter.closed"])
        #expect(M.matter(fixture, access, id)["status"] as? String == "Closed")
    }

    @Test func contactPutAndDeleteWaitForTheDelayToo() throws {
        let (fixture, access) = try C.fixture(writeDelayMilliseconds: Self.delay)
        let id = try C.create(fixture, access, C.person("Grace", "Hopper"))
        fixture.advance(by: Self.seconds + 1)
        func person() -> [String: Any] { F.json(fixture.api("GET", "/contacts/\(id)", token: access)) }
        #expect(person()["isDeleted"] as? Bool == false)

        let accepted = fixture.now
        let put = C.send(fixture, "PUT", "/contacts/\(id)", access, ["person": ["title": "RADM"]], requestID: "c-1")
        #expect(put.status == .accepted)
        #expect((person()["person"] as? [String: Any])?["title"] == nil)
        let waited = Self.poll(fixture, since: accepted) {
            (person()["person"] as? [String: Any])?["title"] as? String == "RADM"
        }
        #expect(try #require(waited) >= Self.seconds)

        #expect(fixture.api("DELETE", "/contacts/\(id)", token: access, requestID: "c-2").status == .accepted)
        #expect(person()["isDeleted"] as? Bool == false)
        #expect(Self.poll(fixture, since: fixture.now) { person()["isDeleted"] as? Bool == true } != nil)
        let events = try fixture.events()
        #expect(events.map(\.type) == ["contact.created", "contact.updated", "contact.deleted"])
        #expect(events.map(\.requestID) == ["contact-req", "c-1", "c-2"])
    }

    /// A kept update that can no longer apply when due (its resource went in between) becomes an
    /// `error` event in the resource's usual shape, is dropped, and does not hold up the updates
    /// kept after it.
    @Test func anUpdateThatCannotApplyBecomesAnErrorEventAndTheQueueMovesOn() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        #expect(M.registerClient(fixture, writeDelayMilliseconds: Self.delay).status == .created)
        let (access, _) = fixture.connect()
        let id = try Self.matter(fixture, access)
        let contact = try C.create(fixture, access, C.person("Ada", "Lovelace"))
        fixture.advance(by: Self.seconds + 1)
        // Kept first, due first: updates of a matter and a contact that no longer exist.
        let goneMatter = UUID()
        let goneContact = UUID()
        let database = try Connection(url: fixture.databaseURL)
        for (resource, gone, method) in [("matter", goneMatter, "DELETE"), ("contact", goneContact, "PUT")] {
            try database.execute(
                """
                INSERT INTO sb_pending_updates (account_id, resource, resource_id, method, body, client_id, apply_at)
                VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
                """,
                [
                    fixture.accountID, resource, gone, method, SQLValue.json(#"{"person": {"title": "x"}}"#),
                    F.clientID, fixture.now.addingTimeInterval(Self.seconds),
                ])
        }
        #expect(M.send(fixture, "PATCH", "/matters/\(id)", access, json: ["description": "after"]).status == .accepted)
        #expect(
            C.send(fixture, "PUT", "/contacts/\(contact)", access, ["person": ["title": "Countess"]]).status
                == .accepted)
        #expect(try Self.pending(fixture) == 4)

        fixture.advance(by: Self.seconds + 1)
        #expect(fixture.admin("POST", "/_sandbox/webhooks/deliver").status == .ok)
        #expect(try Self.pending(fixture) == 0)
        #expect(M.matter(fixture, access, id)["description"] as? String == "after")
        let person = F.json(fixture.api("GET", "/contacts/\(contact)", token: access))["person"] as? [String: Any]
        #expect(person?["title"] as? String == "Countess")
        let errors = try fixture.events().filter { $0.type == "error" }
        #expect(errors.count == 2)
        let matterError = try #require(errors.first { $0.payload["resourceName"] as? String == "matter" })
        #expect(matterError.payload["resourceId"] as? String == goneMatter.uuidString.lowercased())
        #expect(matterError.payload["message"] is String)
        let contactError = try #require(errors.first { $0.payload["resourceName"] as? String == "contact" })
        #expect(contactError.payload["resourceId"] as? String == goneContact.uuidString.lowercased())
        #expect(contactError.payload["message"] is String)
    }

    @Test func refusalsAreStillImmediateAndNothingIsKept() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        #expect(M.registerClient(fixture, writeDelayMilliseconds: Self.delay).status == .created)
        let (access, _) = fixture.connect()
        let id = try Self.matter(fixture, access)
        let refusals: [(String, String, Any, Int)] = [
            ("PATCH", "/matters/\(UUID().uuidString)", ["description": "x"], 404),
            ("PATCH", "/matters/\(id)", ["isLead": true], 400),
            ("PATCH", "/matters/\(id)", ["status": "Nope"], 400),
            ("PUT", "/contacts/\(UUID().uuidString)", ["person": ["title": "x"]], 404),
        ]
        for (method, path, body, status) in refusals {
            let response = M.send(fixture, method, path, access, json: body)
            #expect(response.status.code == status, "\(method) \(path): \(F.text(response))")
            #expect(M.spec.problems(F.json(response), schema: "ProblemDetails") == [])
        }
        #expect(try Self.pending(fixture) == 0)
        fixture.advance(by: 2 * Self.seconds)
        #expect(M.matter(fixture, access, id)["description"] as? String == "before")
        #expect(try fixture.events().map(\.type) == ["matter.created"])
    }
}
