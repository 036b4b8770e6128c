import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// The sync route's `retry` and `ensure_webhooks` actions, and the `job_id` of history entries
/// (the settings page's retry button and "Re-register webhooks").
@Suite struct SyncRetryTests {
    static func json(_ response: Response) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }

    static func errorCode(_ response: Response) throws -> String? {
        (try json(response)["error"] as? [String: Any])?["code"] as? String
    }

    static func jobID(_ response: Response) throws -> String {
        try #require(try json(response)["job_id"] as? String)
    }

    static func setStatus(_ fixture: SyncFixture, _ jobID: String, _ status: String) throws {
        try fixture.database.admin().execute(
            """
            UPDATE jobs SET status = $2, attempts = 5, started_at = now(),
                finished_at = CASE WHEN $2 IN ('dead', 'succeeded') THEN now() END,
                last_error = CASE WHEN $2 = 'dead' THEN 'smokeball_unavailable: Smokeball answered 503' END
            WHERE id = $1
            """, [jobID, status])
    }

    static func row(_ fixture: SyncFixture, _ jobID: String) throws -> Row {
        try #require(try fixture.jobs().first { try $0.uuid("id").uuidString.lowercased() == jobID })
    }

    static func retry(_ jobID: String) -> String { #"{"action": "retry", "job_id": "\#(jobID)"}"# }

    @Test func retryingAFailedJobEnqueuesANewJobWithTheSameArguments() throws {
        try SyncFixture.with { (fixture) throws in
            let failed = try Self.jobID(fixture.post(#"{"matter_id": "\#(fixture.matter)"}"#))
            try Self.setStatus(fixture, failed, "dead")
            let response = fixture.post(Self.retry(failed))
            #expect(response.status.code == 202)
            #expect(try Self.json(response)["status"] as? String == "pending")
            let again = try Self.jobID(response)
            #expect(again != failed)
            let (old, new) = (try Self.row(fixture, failed), try Self.row(fixture, again))
            #expect(try new.string("kind") == "sync_matter")
            for column in ["kind", "key", "payload"] {
                #expect(try new.optionalString(column) == old.optionalString(column))
            }
            #expect(try new.int("priority") == old.int("priority"))
            #expect(try new.optionalUUID("created_by") == fixture.firm.standard)
            #expect(try old.string("status") == "dead")
            #expect(try fixture.jobs().count == 2)
        }
    }

    @Test func aJobThatHasNotFailedIsNotRetryable() throws {
        try SyncFixture.with { (fixture) throws in
            let pending = try Self.jobID(fixture.post(#"{"action": "pull_matters"}"#))
            let whilePending = fixture.post(Self.retry(pending))
            #expect(whilePending.status.code == 409)
            #expect(try Self.errorCode(whilePending) == "not_retryable")
            try Self.setStatus(fixture, pending, "succeeded")
            let succeeded = fixture.post(Self.retry(pending))
            #expect(succeeded.status.code == 409)
            #expect(try Self.errorCode(succeeded) == "not_retryable")
            #expect(try fixture.jobs().count == 1)
        }
    }

    @Test func anotherFirmsJobOrAnUnknownOneIs404() throws {
        try SyncFixture.with { (fixture) throws in
            let theirs = try Self.jobID(fixture.post(#"{"action": "pull_matters"}"#, user: fixture.other.standard))
            try Self.setStatus(fixture, theirs, "dead")
            for jobID in [theirs, UUID().uuidString.lowercased()] {
                let response = fixture.post(Self.retry(jobID), user: fixture.firm.admin)
                #expect(response.status.code == 404)
                #expect(try Self.errorCode(response) == "not_found")
            }
            #expect(fixture.post(#"{"action": "retry"}"#).status.code == 400)
            #expect(fixture.post(#"{"action": "retry", "job_id": "17"}"#).status.code == 400)
            #expect(fixture.post(#"{"action": "retry", "job_id": "\#(theirs)", "matter_id": "x"}"#).status.code == 400)
            #expect(try fixture.jobs().count == 1)
        }
    }

    @Test func retryingABulkJobTakesAFirmAdminLikeTheBulkSync() throws {
        try SyncFixture.with { (fixture) throws in
            let bulk = try Self.jobID(fixture.post(#"{"action": "sync_all"}"#, user: fixture.firm.admin))
            try Self.setStatus(fixture, bulk, "dead")
            let standard = fixture.post(Self.retry(bulk), user: fixture.firm.standard)
            #expect(standard.status.code == 403)
            #expect(try Self.errorCode(standard) == "forbidden")
            #expect(fixture.post(Self.retry(bulk), user: fixture.firm.admin).status.code == 202)
            #expect(try fixture.jobs().count == 2)
        }
    }

    @Test func ensureWebhooksEnqueuesTheSubscriptionEnsureForFirmAdminsOnly() throws {
        try SyncFixture.with { (fixture) throws in
            let refused = fixture.post(#"{"action": "ensure_webhooks"}"#, user: fixture.firm.standard)
            #expect(refused.status.code == 403)
            #expect(try Self.errorCode(refused) == "forbidden")
            #expect(try fixture.jobs().isEmpty)
            let response = fixture.post(#"{"action": "ensure_webhooks"}"#, user: fixture.firm.admin)
            #expect(response.status.code == 202)
            let jobID = try Self.jobID(response)
            let row = try Self.row(fixture, jobID)
            #expect(try row.string("kind") == EnsureWebhookSubscriptionJob.kind)
            #expect(try row.uuid("firm_id") == fixture.firm.id)
            let followed = fixture.call("GET", user: fixture.firm.standard, query: ["job_id": jobID])
            #expect(followed.status.code == 200)
            #expect(try Self.json(followed)["kind"] as? String == EnsureWebhookSubscriptionJob.kind)
        }
    }

    @Test func ensureWebhooksNeedsAConnectedFirm() throws {
        try SyncFixture.with(connected: false) { (fixture) throws in
            let response = fixture.post(#"{"action": "ensure_webhooks"}"#, user: fixture.firm.admin)
            #expect(response.status.code == 409)
            #expect(try Self.errorCode(response) == "not_connected")
        }
    }

    @Test func aHistoryEntryWrittenByAJobCarriesItsJobID() throws {
        try SyncFixture.with { (fixture) throws in
            let jobID = try Self.jobID(fixture.post(#"{"matter_id": "\#(fixture.matter)"}"#))
            let work = Database(url: fixture.database.workerURL)
            let job = try #require(try JobQueue(database: work).claim(kinds: ["sync_matter"], leaseSeconds: 60))
            #expect(job.id.uuidString.lowercased() == jobID)
            try work.transaction { connection in
                _ = try JobScope(jobID: job.id, leaseID: job.leaseID).enter(connection)
                try SyncLog.record(
                    connection, step: .matter, outcome: .failed, matterID: fixture.matter, error: "refused")
            }
            // A row written outside a job has none.
            try fixture.seed.asFirm(fixture.firm.id) { connection in
                try SyncLog.record(connection, step: .contact, outcome: .skipped, matterID: fixture.matter)
            }
            let body = try Self.json(fixture.call("GET", user: fixture.firm.standard))
            let entries = try #require(body["entries"] as? [[String: Any]])
            #expect(entries.count == 2)
            #expect(entries.first { $0["action"] as? String == "matter.failed" }?["job_id"] as? String == jobID)
            #expect(entries.first { $0["action"] as? String == "contact.skipped" }?["job_id"] is NSNull)
        }
    }
}
