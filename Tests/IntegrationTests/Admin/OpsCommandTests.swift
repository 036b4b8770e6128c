import Basics
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// `casehug-admin`'s ops commands against a real database, as the `casehug_ops` role.
@Suite struct OpsCommandTests {
    @Test func theOpsRoleReachesFirmDataOnlyThroughTheOpsFunctions() throws {
        try OpsFixture.with { fixture in
            let ops = try Connection(url: fixture.database.opsURL)
            for table in ["jobs", "firm_integrations", "smokeball_webhook_events", "firms"] {
                #expect(throws: DatabaseError.self) { try ops.execute("SELECT count(*) FROM \(table)") }
            }
            // The app role may not call them.
            let app = try Connection(url: fixture.database.appURL)
            #expect(throws: DatabaseError.self) { try app.execute("SELECT * FROM ops_metrics()") }
            #expect(throws: DatabaseError.self) { try app.execute("SELECT * FROM ops_connections(NULL)") }
            // A superuser is refused, as the routes refuse one.
            #expect(throws: DatabaseError.self) {
                try fixture.run(["connections"], environment: ["CASEHUG_OPS_DATABASE_URL": fixture.database.adminURL])
            }
        }
    }

    @Test func connectionsListEveryFirmsConnectionAndWhichNeedReconnecting() throws {
        try OpsFixture.with { fixture in
            let healthy = try fixture.seed.firm("A Healthy")
            let revoked = try fixture.seed.firm("B Revoked")
            let expired = try fixture.seed.firm("C Expired")
            try fixture.connect(healthy, account: "account-a", region: "AU")
            try fixture.connect(revoked, needsReconnect: "invalid_grant")
            try fixture.connect(expired, refreshExpiresIn: -60)
            let rows = try fixture.rows(["connections"], key: "connections")
            #expect(rows.count == 3)
            #expect(
                Set(rows[0].keys) == [
                    "firm_id", "firm", "account_id", "region", "active", "token_expires_at",
                    "refresh_token_expires_at", "needs_reconnect", "needs_reconnect_reason",
                ])
            #expect(rows.map { $0["firm"] as? String } == ["A Healthy", "B Revoked", "C Expired"])
            #expect(rows[0]["account_id"] as? String == "account-a" && rows[0]["region"] as? String == "AU")
            #expect(rows.map { $0["needs_reconnect"] as? Bool } == [false, true, true])
            #expect(rows[0]["needs_reconnect_reason"] is NSNull)
            #expect(rows[1]["needs_reconnect_reason"] as? String == "invalid_grant")
            #expect(rows[2]["needs_reconnect_reason"] as? String == "refresh_token_expired")

            let one = try fixture.rows(["connections", "--firm", revoked.uuidString], key: "connections")
            #expect(one.map { $0["firm_id"] as? String } == [revoked.uuidString.lowercased()])
            let table = try fixture.run(["connections"])
            #expect(table.hasPrefix("firm_id"))
            #expect(table.contains(healthy.uuidString.lowercased()) && table.contains("invalid_grant"))
            #expect(
                OpsFixture.errorCode { try fixture.run(["connections", "--firm", UUID().uuidString]) } == "unknown_firm"
            )
        }
    }

    @Test func jobsAreListedRetriedAndCancelledDeadOnesIncluded() throws {
        try OpsFixture.with { fixture in
            let firm = try fixture.seed.firm()
            let other = try fixture.seed.firm()
            let dead = try fixture.job(firm, kind: "sync_matter", key: "matter:1", status: "dead")
            let pending = try fixture.job(other, kind: "push_contact", key: "contact:1", status: "pending")
            let running = try fixture.job(firm, kind: "pull_matters", status: "running")
            let succeeded = try fixture.job(firm, status: "succeeded")

            let listed = try fixture.rows(["jobs", "list"], key: "jobs")
            #expect(
                Set(listed.compactMap { $0["id"] as? String })
                    == Set([dead, pending, running].map { $0.uuidString.lowercased() }))
            #expect(listed.allSatisfy { $0.keys.count == 11 && $0["finished_at"] != nil })
            let deadOnly = try fixture.rows(["jobs", "list", "--status", "dead"], key: "jobs")
            #expect(deadOnly.map { $0["last_error"] as? String } == ["Smokeball refused the matter"])
            let ofFirm = try fixture.rows(
                ["jobs", "list", "--firm", firm.uuidString, "--status", "succeeded"], key: "jobs")
            #expect(ofFirm.map { $0["id"] as? String } == [succeeded.uuidString.lowercased()])

            let retried = try fixture.rows(["jobs", "retry", dead.uuidString], key: "retried")
            #expect(retried.first?["was"] as? String == "dead")
            #expect(retried.first?["pending_job_id"] as? String == dead.uuidString.lowercased())
            #expect(try fixture.status(ofJob: dead) == "pending")

            let cancelled = try fixture.rows(["jobs", "cancel", pending.uuidString], key: "cancelled")
            #expect(cancelled.first?["status"] as? String == "dead")
            #expect(try fixture.status(ofJob: pending) == "dead")
            // A cancelled job is dead like any other: it can be retried.
            _ = try fixture.run(["jobs", "retry", pending.uuidString])
            #expect(try fixture.status(ofJob: pending) == "pending")

            #expect(
                OpsFixture.errorCode { try fixture.run(["jobs", "cancel", running.uuidString]) } == "not_cancellable")
            #expect(try fixture.status(ofJob: running) == "running")
            #expect(
                OpsFixture.errorCode { try fixture.run(["jobs", "retry", succeeded.uuidString]) } == "not_retryable")
            #expect(OpsFixture.errorCode { try fixture.run(["jobs", "retry", UUID().uuidString]) } == "unknown_job")
            #expect(throws: AdminCommand.UsageError.self) {
                try fixture.run(["jobs", "list", "--status", "succeeded"])
            }
            #expect(throws: AdminCommand.UsageError.self) { try fixture.run(["jobs", "list", "--status", "lost"]) }
        }
    }

    @Test func webhooksReplayReprocessesTheEventsOfAFirmInARangeAndMayBeRepeated() throws {
        try OpsFixture.with { fixture in
            let firm = try fixture.seed.firm()
            let other = try fixture.seed.firm()
            func event(_ firm: UUID, minutesAgo: Double) throws -> UUID {
                let id = UUID()
                try fixture.seed.asFirm(firm) { connection in
                    try connection.execute(
                        """
                        INSERT INTO smokeball_webhook_events (id, firm_id, event_type, payload, dedupe_key, processed,
                            processed_at, status, created_at)
                        VALUES ($1, $2, 'matter.updated', '{}', $3, true, now(), 'applied',
                            now() - make_interval(secs => $4))
                        """, [id, firm, id.uuidString, minutesAgo * 60])
                }
                return id
            }
            let inside = [try event(firm, minutesAgo: 50), try event(firm, minutesAgo: 20)]
            let before = try event(firm, minutesAgo: 120)
            let otherFirms = try event(other, minutesAgo: 30)
            let since = Timestamp.iso8601(Date().addingTimeInterval(-3600))
            let until = Timestamp.iso8601(Date().addingTimeInterval(-600))
            let arguments = ["webhooks", "replay", "--firm", firm.uuidString, "--since", since, "--until", until]

            func state() throws -> [UUID: Bool] {
                var processed: [UUID: Bool] = [:]
                for row in try fixture.seed.connection.execute("SELECT id, processed FROM smokeball_webhook_events")
                    .rows
                {
                    processed[try row.uuid("id")] = try row.bool("processed")
                }
                return processed
            }
            // Replayed events are pending on the event queue again (migration 045), due now, with
            // no job beside them.
            func jobKeys() throws -> [String] {
                #expect(
                    try fixture.seed.connection.execute("SELECT count(*)::int8 AS n FROM jobs").single().int("n") == 0)
                return try fixture.seed.connection.execute(
                    """
                    SELECT 'event:' || id::text AS key FROM smokeball_webhook_events
                    WHERE NOT processed AND lease_id IS NULL AND attempts = 0 AND run_after <= now() ORDER BY key
                    """
                ).rows.map { try $0.string("key") }
            }
            for _ in 0..<2 {
                let replayed = try fixture.rows(arguments, key: "replayed")
                #expect(replayed.first?["events"] as? Int == 2)
                #expect(Set(replayed.first?.keys.map { $0 } ?? []) == ["firm_id", "since", "until", "events"])
                // The second run leaves them pending: still one work item per event.
                #expect(try jobKeys() == inside.map { "event:" + $0.uuidString.lowercased() }.sorted())
            }
            let processed = try state()
            #expect(inside.allSatisfy { processed[$0] == false })
            #expect(processed[before] == true && processed[otherFirms] == true)
        }
    }

    @Test(arguments: [
        (["--since", "2026-11-29T10:00:00Z", "--until", "2026-11-29T09:00:00Z"], "bad_range"),
        (["--since", "2026-11-29T10:00:00Z", "--until", "2026-11-29T10:00:00Z"], "bad_range"),
        (["--since", "yesterday", "--until", "2026-11-29T10:00:00Z"], "usage"),
    ])
    func webhooksReplayRefusesABadRange(range: [String], code: String) throws {
        try OpsFixture.with { fixture in
            let firm = try fixture.seed.firm()
            let found = OpsFixture.errorCode {
                do {
                    return try fixture.run(["webhooks", "replay", "--firm", firm.uuidString] + range)
                } catch is AdminCommand.UsageError {
                    throw OpsError(code: "usage", message: "")
                }
            }
            #expect(found == code)
        }
    }

    @Test func webhooksReplayRefusesAnUnknownFirm() throws {
        try OpsFixture.with { fixture in
            let arguments = [
                "webhooks", "replay", "--firm", UUID().uuidString, "--since", "2026-11-29T09:00:00Z", "--until",
                "2026-11-29T10:00:00.500Z",
            ]
            #expect(OpsFixture.errorCode { try fixture.run(arguments) } == "unknown_firm")
        }
    }

    @Test func resyncAndImportEnqueueTheFirmsJobsOnce() throws {
        try OpsFixture.with { fixture in
            let firm = try fixture.seed.firm()
            try fixture.connect(firm)
            let resync = try fixture.rows(["resync", firm.uuidString], key: "enqueued")
            #expect(resync.map { $0["kind"] as? String } == ["sync_matters", "pull_matters"])
            let again = try fixture.rows(["resync", firm.uuidString], key: "enqueued")
            #expect(again.map { $0["job_id"] as? String } == resync.map { $0["job_id"] as? String })
            let imported = try fixture.rows(["import", firm.uuidString], key: "enqueued")
            #expect(imported.map { $0["kind"] as? String } == ["import_matters"])
            let jobs = try fixture.seed.connection.execute(
                "SELECT kind, key, payload::text AS payload, firm_id FROM jobs ORDER BY kind"
            ).rows
            #expect(try jobs.map { try $0.string("kind") } == ["import_matters", "pull_matters", "sync_matters"])
            #expect(try jobs.allSatisfy { try $0.uuid("firm_id") == firm })
            #expect(try jobs[2].string("payload") == #"{"all": true}"#)

            let unconnected = try fixture.seed.firm()
            #expect(OpsFixture.errorCode { try fixture.run(["resync", unconnected.uuidString]) } == "not_connected")
            #expect(OpsFixture.errorCode { try fixture.run(["import", UUID().uuidString]) } == "unknown_firm")
            #expect(throws: AdminCommand.UsageError.self) { try fixture.run(["import"]) }
        }
    }
}
