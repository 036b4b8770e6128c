import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// Failed links on the status route, from real `error` events: a sync whose contact and matter
/// creates Smokeball accepts (202) and refuses later, the events processed by
/// `process_webhook_event` (`WebhookEventRig`), then `GET …/status`.
@Suite struct FailedLinksStatusTests {
    @Test(
        "error events for a contact and a matter we created show as failed links on status, with our message and not Smokeball's, until a sync links them again"
    )
    func errorEventsShowAsFailedLinks() throws {
        try WebhookEventRig.with { rig in
            let fixture = rig.fixture
            // An address Smokeball accepts at once and refuses while processing: the contact's
            // create fails, and so does the matter's, which names that contact.
            let client = try fixture.client(email: "ada-at-example.test", phone: "555 0100")
            let matter = try fixture.matter(client: client)
            let mark = try rig.eventMark()
            _ = try fixture.syncMatter(matter)
            let errors = try rig.events(after: mark, types: ["error"])
            try #require(errors.count == 2, "\(errors.map(\.payload))")
            for event in errors { try rig.store(event) }
            #expect(try rig.processAll() == 2)

            let handler = StatusHandler(
                authenticator: Authenticator(secret: Array(TestEnvironment.jwtSecret.utf8)), database: rig.flow.database
            )
            func status() throws -> (body: [String: Any], text: String) {
                let request = Request(
                    method: "GET", path: "/api/v1/integrations/smokeball/status",
                    headers: [
                        "authorization": "Bearer " + TestEnvironment.token(subject: rig.flow.firm.admin.uuidString)
                    ],
                    body: [], requestID: "test")
                let response = respond(to: request, with: handler, log: Logger(route: "status")).0
                #expect(response.status.code == 200)
                return (try StatusHandlerTests.json(response), String(decoding: response.body, as: UTF8.self))
            }
            let (body, text) = try status()
            let failed = try #require(body["failed_links"] as? [String: Any])
            #expect(failed["count"] as? Int == 2 && failed["matters"] as? Int == 1 && failed["contacts"] as? Int == 1)
            let latest = try #require(failed["latest"] as? [String: Any])
            let ids = [latest["matter_id"] as? String, latest["client_id"] as? String].compactMap { $0 }
            #expect(ids == [matter.uuidString.lowercased()] || ids == [client.uuidString.lowercased()])
            #expect(latest["failed_at"] is String)
            // Smokeball's message quotes the address; the history has it, status does not.
            #expect(!text.contains("ada-at-example.test"))
            let history = try rig.flow.seed.connection.execute(
                "SELECT error_message FROM integration_sync_logs WHERE error_message LIKE '%ada-at-example.test%'"
            ).rows
            #expect(!history.isEmpty)

            // The firm fixes the address; a sync creates both again: nothing is failed any more.
            try rig.flow.seed.connection.execute(
                "UPDATE clients SET email = 'ada@example.test' WHERE id = $1", [client])
            let again = try fixture.syncMatter(matter)
            #expect(again.status == .succeeded, "\(String(describing: again.error))")
            let after = try #require(try status().body["failed_links"] as? [String: Any])
            #expect(after["count"] as? Int == 0)
            #expect(after["latest"] is NSNull)
        }
    }
}
