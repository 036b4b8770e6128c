import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// Migration 041's per-firm summary, which the status route reads instead of the rows it
/// summarises: it must follow those rows whoever writes them (the worker's functions, which bind
/// no firm; the app under row-level security), and stay right when two changes race.
@Suite struct InboundSummaryTests {
    typealias Fixture = StatusHandlerTests.Fixture

    static func importAnswer(_ fixture: Fixture) throws -> [String: Any]? {
        try StatusInboundTests.get(fixture).body["import"] as? [String: Any]
    }

    @Test func anImportShowsEachStepTheWorkerRecordsThroughTheQueueFunctions() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let jobID = try Database(url: database.appURL).transaction { connection in
                _ = try Tenancy.enter(connection, userID: fixture.admin)
                return try JobQueue.enqueue(connection, kind: ImportMattersJob.kind, key: "firm")
            }
            let pending = try #require(try Self.importAnswer(fixture))
            #expect(pending["job_id"] as? String == jobID.uuidString.lowercased())
            #expect(pending["status"] as? String == "pending")

            let queue = JobQueue(database: Database(url: database.workerURL))
            let job = try #require(try queue.claim(kinds: [ImportMattersJob.kind], leaseSeconds: 60))
            #expect(job.id == jobID)
            #expect(try queue.heartbeat(job, leaseSeconds: 60, progress: JobProgress(done: 5, total: 10, failed: 1)))
            let running = try #require(try Self.importAnswer(fixture))
            #expect(running["status"] as? String == "running" && running["started_at"] is String)
            let progress = try #require(running["progress"] as? [String: Any])
            #expect(progress["done"] as? Int == 5 && progress["total"] as? Int == 10 && progress["failed"] as? Int == 1)

            #expect(
                try queue.finish(job, resultJSON: "{}", progress: JobProgress(done: 10, total: 10, failed: 1)))
            let finished = try #require(try Self.importAnswer(fixture))
            #expect(finished["status"] as? String == "succeeded" && finished["finished_at"] is String)
            #expect((finished["progress"] as? [String: Any])?["done"] as? Int == 10)

            // A later import replaces it; an older one written afterwards does not.
            try fixture.seed.asFirm(fixture.firm) { connection in
                try connection.execute(
                    """
                    INSERT INTO jobs (firm_id, kind, key, status, created_at, finished_at, result)
                    VALUES ($1, 'import_matters', 'old', 'succeeded', now() - interval '1 day', now(), '{}')
                    """, [fixture.firm])
            }
            #expect(try Self.importAnswer(fixture)?["job_id"] as? String == jobID.uuidString.lowercased())
        }
    }

    @Test func twoLinksFailingAtTheSameTimeAreBothCounted() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let first = try fixture.seed.matter(firm: fixture.firm)
            let second = try fixture.seed.matter(firm: fixture.firm)
            // The firm's summary row exists already (a failed contact), so the second change
            // finds it committed and must wait for the first's lock before it counts.
            try fixture.seed.asFirm(fixture.firm) { connection in
                try connection.execute(
                    """
                    INSERT INTO clients (firm_id, first_name, last_name, smokeball_contact_failed_at)
                    VALUES ($1, 'A', 'B', now())
                    """, [fixture.firm])
            }
            let failMatter = """
                UPDATE matters SET smokeball_matter_id = 'sb-' || id::text, smokeball_link_status = 'failed',
                    smokeball_link_failed_at = now()
                WHERE id = $1
                """
            let blocker = try database.admin()
            try blocker.execute("BEGIN")
            try blocker.execute("SELECT set_config('app.firm_id', $1, true)", [fixture.firm.uuidString.lowercased()])
            try blocker.execute(failMatter, [first])
            let failures = Locked<[String]>([])
            let firm = fixture.firm
            let other = Thread {
                do {
                    try Seed(database).asFirm(firm) { try $0.execute(failMatter, [second]) }
                } catch {
                    failures.withLock { $0.append(String(describing: error)) }
                }
            }
            other.start()
            #expect(try FailClosedTenancyTests.waitForLockWaiters(database, atLeast: 1))
            try blocker.execute("COMMIT")
            try Processes.waitFor("the second change", timeout: 30) { other.isFinished }
            #expect(failures.value.isEmpty, "\(failures.value)")

            let links = try #require(try StatusInboundTests.get(fixture).body["failed_links"] as? [String: Any])
            #expect(links["matters"] as? Int == 2 && links["contacts"] as? Int == 1 && links["count"] as? Int == 3)
        }
    }

    @Test func aFirmsDeletionTakesItsSummaryWithItAndWritesNone() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let matter = try fixture.seed.matter(firm: fixture.firm)
            try fixture.seed.asFirm(fixture.firm) { connection in
                try connection.execute(
                    "UPDATE matters SET smokeball_matter_id = 'sb-1', smokeball_link_status = 'failed' WHERE id = $1",
                    [matter])
            }
            let admin = try database.admin()
            #expect(
                try admin.execute(
                    "SELECT failed_matters FROM smokeball_inbound_summary WHERE firm_id = $1", [fixture.firm]
                ).single().int("failed_matters") == 1)
            // As an operator deletes a firm: no firm bound, the matters go with it.
            try admin.execute("DELETE FROM firms WHERE id = $1", [fixture.firm])
            #expect(
                try admin.execute(
                    "SELECT count(*) AS n FROM smokeball_inbound_summary WHERE firm_id = $1", [fixture.firm]
                ).single().int("n") == 0)
        }
    }
}
