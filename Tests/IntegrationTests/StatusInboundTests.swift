import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// The status route's inbound fields (docs/inbound.md, "Status"), from rows written as the
/// webhooks route, the worker and an `error` event leave them, against a real migrated database.
@Suite struct StatusInboundTests {
    typealias Fixture = StatusHandlerTests.Fixture

    static func get(_ fixture: Fixture) throws -> (body: [String: Any], text: String) {
        let response = fixture.call("GET", user: fixture.standard)
        #expect(response.status.code == 200)
        return (try StatusHandlerTests.json(response), String(decoding: response.body, as: UTF8.self))
    }

    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    static func event(
        _ connection: Connection, firm: UUID, type: String, age: String, processed: Bool, status: String?,
        payload: String = "{}"
    ) throws {
        try connection.execute(
            """
            INSERT INTO smokeball_webhook_events (firm_id, event_type, payload, processed, processed_at, status,
                dedupe_key, created_at)
            VALUES ($1, $2, $3::jsonb, $4, CASE WHEN $4 THEN now() END, $5, gen_random_uuid()::text,
                now() - $6::interval)
            """, [firm, type, SQLValue.json(payload), processed, status, age])
    }

    @Test func importNewMattersIsOffByDefaultAndFirmAdminsTurnItOnWithPatchAndOffWithPut() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            func setting(_ response: Response) throws -> Bool? {
                (try StatusHandlerTests.json(response)["settings"] as? [String: Any])?["import_new_matters"] as? Bool
            }
            #expect(try setting(fixture.call("GET", user: fixture.standard)) == false)
            let patched = fixture.call("PATCH", user: fixture.admin, body: #"{"import_new_matters": true}"#)
            #expect(patched.status.code == 200)
            #expect(try setting(patched) == true)
            #expect(try setting(fixture.call("GET", user: fixture.standard)) == true)
            // Stored, and read by the worker as the setting.
            let stored = try #require(try fixture.seed.settingsJSON(firm: fixture.firm))
            let object = try #require(try JSONSerialization.jsonObject(with: Data(stored.utf8)) as? [String: Any])
            #expect(IntegrationSettings(stored: object).importNewMatters)
            // A standard user cannot; PUT without it is the default again.
            #expect(
                fixture.call("PATCH", user: fixture.standard, body: #"{"import_new_matters": false}"#).status.code
                    == 403)
            #expect(try setting(fixture.call("PUT", user: fixture.admin, body: "{}")) == false)
        }
    }

    @Test func aFirmWithNoInboundHistoryGetsEveryInboundKeyWithNullsAndZeros() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let body = try Self.get(fixture).body
            #expect(body["last_webhook"] is NSNull)
            #expect(body["import"] is NSNull)
            let events = try #require(body["webhook_events"] as? [String: Any])
            #expect(events["pending"] as? Int == 0 && events["failed"] as? Int == 0)
            let delivery = try #require(body["webhook_delivery"] as? [String: Any])
            #expect(delivery["noop_sent_at"] is NSNull && delivery["noop_arrived_at"] is NSNull)
            #expect(delivery["state"] as? String == "unchecked")
            let failed = try #require(body["failed_links"] as? [String: Any])
            #expect(failed["count"] as? Int == 0 && failed["matters"] as? Int == 0 && failed["contacts"] as? Int == 0)
            #expect(failed["latest"] is NSNull)
        }
    }

    @Test func theLastWebhookAndPendingAndFailedCountsAreTheFirmsOwnWithoutThePayload() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let other = try fixture.seed.firm("Firm B")
            try fixture.seed.asFirm(fixture.firm) { connection in
                try Self.event(
                    connection, firm: fixture.firm, type: "matter.updated", age: "3 hours", processed: true,
                    status: "applied")
                try Self.event(
                    connection, firm: fixture.firm, type: "contact.updated", age: "2 hours", processed: false,
                    status: nil)
                try Self.event(
                    connection, firm: fixture.firm, type: "matter.closed", age: "1 hour", processed: true,
                    status: "failed", payload: #"{"title": "Avery Example divorce"}"#)
                try Self.event(
                    connection, firm: fixture.firm, type: "noop", age: "2 minutes", processed: true, status: "applied")
            }
            // Another firm's newer, pending and failed events are not this firm's.
            try fixture.seed.asFirm(other) { connection in
                try Self.event(connection, firm: other, type: "memo.created", age: "0", processed: false, status: nil)
                try Self.event(connection, firm: other, type: "error", age: "0", processed: true, status: "failed")
            }
            let (body, text) = try Self.get(fixture)
            let last = try #require(body["last_webhook"] as? [String: Any])
            #expect(last["event_type"] as? String == "noop")
            let received = try #require((last["received_at"] as? String).flatMap(Self.date))
            #expect(abs(received.timeIntervalSinceNow + 120) < 60)
            #expect(last.count == 2)
            let events = try #require(body["webhook_events"] as? [String: Any])
            #expect(events["pending"] as? Int == 1)
            #expect(events["failed"] as? Int == 1)
            #expect(!text.contains("Avery"))
        }
    }

    @Test func countsStopAtTheLimit() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            try fixture.seed.asFirm(fixture.firm) { connection in
                try connection.execute(
                    """
                    INSERT INTO smokeball_webhook_events (firm_id, event_type, payload, dedupe_key)
                    SELECT $1, 'matter.updated', '{}', 'k' || g FROM generate_series(1, $2::int) g
                    """, [fixture.firm, StatusHandler.countLimit + 5])
            }
            let events = try #require(try Self.get(fixture).body["webhook_events"] as? [String: Any])
            #expect(events["pending"] as? Int == StatusHandler.countLimit)

            // Failed events past the limit too: each count still reaches the limit on its own.
            try fixture.seed.asFirm(fixture.firm) { connection in
                try connection.execute(
                    """
                    INSERT INTO smokeball_webhook_events (firm_id, event_type, payload, dedupe_key, processed,
                        processed_at, status)
                    SELECT $1, 'matter.updated', '{}', 'f' || g, true, now(), 'failed'
                    FROM generate_series(1, $2::int) g
                    """, [fixture.firm, StatusHandler.countLimit + 5])
            }
            let both = try #require(try Self.get(fixture).body["webhook_events"] as? [String: Any])
            #expect(both["pending"] as? Int == StatusHandler.countLimit)
            #expect(both["failed"] as? Int == StatusHandler.countLimit)
        }
    }

    @Test func theDeliveryCheckIsWaitingUntilANoopArrivesAfterTheLastOneAskedFor() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            func set(sent: String?, arrived: String?) throws {
                try fixture.seed.asFirm(fixture.firm) { connection in
                    try connection.execute(
                        """
                        INSERT INTO firm_integrations (firm_id, platform, webhook_noop_sent_at, webhook_last_noop_at)
                        VALUES ($1, 'smokeball', now() - $2::interval, now() - $3::interval)
                        ON CONFLICT (firm_id, platform) DO UPDATE
                        SET webhook_noop_sent_at = excluded.webhook_noop_sent_at,
                            webhook_last_noop_at = excluded.webhook_last_noop_at
                        """, [fixture.firm, sent, arrived])
                }
            }
            func delivery() throws -> [String: Any] {
                try #require(try Self.get(fixture).body["webhook_delivery"] as? [String: Any])
            }
            try set(sent: "1 minute", arrived: nil)
            #expect(try delivery()["state"] as? String == "waiting")
            #expect(try delivery()["noop_arrived_at"] is NSNull)
            try set(sent: "1 minute", arrived: "1 hour")
            #expect(try delivery()["state"] as? String == "waiting")
            try set(sent: "1 minute", arrived: "30 seconds")
            let verified = try delivery()
            #expect(verified["state"] as? String == "verified")
            let sent = try #require((verified["noop_sent_at"] as? String).flatMap(Self.date))
            let arrived = try #require((verified["noop_arrived_at"] as? String).flatMap(Self.date))
            #expect(arrived.timeIntervalSince(sent) > 20 && arrived.timeIntervalSince(sent) < 40)
        }
    }

    @Test func theNewestImportShowsItsProgressAndTheETAAsTheSyncRouteComputesIt() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            try fixture.seed.asFirm(fixture.firm) { connection in
                try connection.execute(
                    """
                    INSERT INTO jobs (firm_id, kind, key, status, progress_done, progress_total, created_at, started_at,
                        finished_at, result)
                    VALUES ($1, 'import_matters', 'firm', 'succeeded', 40, 40, now() - interval '1 day',
                        now() - interval '1 day', now() - interval '1 day', '{}')
                    """, [fixture.firm])
                try connection.execute(
                    """
                    INSERT INTO jobs (firm_id, kind, key, status, progress_done, progress_total, progress_failed,
                        created_at, started_at, lease_id, lease_until, run_after)
                    VALUES ($1, 'import_matters', 'firm', 'running', 100, 400, 2, now() - interval '20 seconds',
                        now() - interval '10 seconds', gen_random_uuid(), now() + interval '1 minute',
                        now() + interval '1 minute')
                    """, [fixture.firm])
                // Newer jobs of other kinds are not an import.
                try connection.execute(
                    "INSERT INTO jobs (firm_id, kind, key) VALUES ($1, 'process_webhook_event', 'event:x')",
                    [fixture.firm])
            }
            let running = try #require(try Self.get(fixture).body["import"] as? [String: Any])
            #expect(running["status"] as? String == "running")
            let progress = try #require(running["progress"] as? [String: Any])
            #expect(
                progress["done"] as? Int == 100 && progress["total"] as? Int == 400 && progress["failed"] as? Int == 2)
            // 300 left at 100 per ~10 s: SyncHandler.etaSeconds, by the database's clock.
            let eta = try #require(running["eta_seconds"] as? Int)
            #expect(eta >= 30 && eta <= 45, "\(eta)")
            #expect(running["finished_at"] is NSNull && running["error"] is NSNull)
            #expect(running["started_at"] is String && running["created_at"] is String)
            #expect(running["job_id"] is String)
        }
    }

    @Test func failedLinksCountMattersAndClientsWhoseCreateFailedAndShowTheLatestWithoutPHI() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let matter = try fixture.seed.matter(firm: fixture.firm, title: "Avery Example divorce")
            let (failedClient, relinked) = try fixture.seed.asFirm(fixture.firm) { connection in
                try connection.execute(
                    """
                    UPDATE matters SET smokeball_matter_id = 'sb-1', smokeball_link_status = 'failed',
                        smokeball_link_failed_at = now() - interval '1 hour'
                    WHERE id = $1
                    """, [matter])
                let failedClient = try connection.execute(
                    """
                    INSERT INTO clients (firm_id, first_name, last_name, email, smokeball_contact_failed_at)
                    VALUES ($1, 'Avery', 'Example', 'avery@example.test', now() - interval '1 minute') RETURNING id
                    """, [fixture.firm]
                ).single().uuid("id")
                // Failed once, linked since: no longer failed.
                let relinked = try connection.execute(
                    """
                    INSERT INTO clients (firm_id, first_name, last_name, smokeball_contact_id, smokeball_contact_linked_by,
                        smokeball_contact_failed_at)
                    VALUES ($1, 'Jordan', 'Sample', 'contact-9', 'created', now()) RETURNING id
                    """, [fixture.firm]
                ).single().uuid("id")
                return (failedClient, relinked)
            }
            let (body, text) = try Self.get(fixture)
            let failed = try #require(body["failed_links"] as? [String: Any])
            #expect(failed["count"] as? Int == 2 && failed["matters"] as? Int == 1 && failed["contacts"] as? Int == 1)
            let latest = try #require(failed["latest"] as? [String: Any])
            #expect(latest["resource"] as? String == "contact")
            #expect(latest["client_id"] as? String == failedClient.uuidString.lowercased())
            #expect(latest["matter_id"] is NSNull)
            #expect(latest["message"] as? String == StatusAnswer.FailedLink.contactMessage)
            #expect(!text.contains(relinked.uuidString.lowercased()))
            for phi in ["Avery", "Example", "avery@example.test"] { #expect(!text.contains(phi)) }

            // The client gets its contact (a later sync): the matter is the latest failure left.
            try fixture.seed.asFirm(fixture.firm) { connection in
                try connection.execute(
                    """
                    UPDATE clients SET smokeball_contact_id = 'contact-10', smokeball_contact_linked_by = 'created'
                    WHERE id = $1
                    """, [failedClient])
            }
            let after = try #require(try Self.get(fixture).body["failed_links"] as? [String: Any])
            #expect(after["count"] as? Int == 1 && after["contacts"] as? Int == 0)
            let matterLink = try #require(after["latest"] as? [String: Any])
            #expect(matterLink["resource"] as? String == "matter")
            #expect(matterLink["matter_id"] as? String == matter.uuidString.lowercased())
            #expect(matterLink["message"] as? String == StatusAnswer.FailedLink.matterMessage)
            #expect(matterLink["failed_at"] is String)
        }
    }
}
