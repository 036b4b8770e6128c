import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

#if canImport(Glibc)
    import Glibc
#endif

extension KillableWorker {
    /// The real `worker` (every kind, the sync kinds among them) for the fixture's firm, with a
    /// short lease so a killed attempt is taken over soon.
    static func sync(_ fixture: MatterSyncFixture, settleSeconds: Double) throws -> KillableWorker {
        try KillableWorker(
            executable: "worker",
            arguments: ["--workers", "1", "--lease-seconds", "3", "--grace-seconds", "1", "--backoff-seconds", "1"],
            environment: fixture.sandbox.environment([
                "DATABASE_URL": fixture.sandbox.database.workerURL,
                "TOKEN_ENCRYPTION_KEY": Data(ConnectionFlow.key).base64EncodedString(),
                "SITE_URL": "https://casehug.test", "SYNC_SETTLE_SECONDS": String(settleSeconds),
                "PATH": "/usr/bin:/bin",
            ]))
    }
}

/// Crash safety: the worker is killed (SIGKILL) while each Smokeball request of a sync is in
/// flight (a sandbox latency fault holds it there), a new worker takes the job over, and the
/// sandbox then holds exactly one contact and one matter for the client and the matter.
@Suite(.serialized) struct MatterSyncCrashTests {
    enum Boundary: String, CaseIterable, CustomStringConvertible {
        case contactSearch = "GET /contacts (search)"
        case contactCreate = "POST /contacts"
        case matterCreate = "POST /matters"
        case matterConfirm = "GET /matters/{id} (confirm)"

        var description: String { rawValue }

        var faultPrefix: String {
            switch self {
            case .contactSearch, .contactCreate: "/contacts"
            case .matterCreate: "/matters"
            case .matterConfirm: "/matters/"
            }
        }
    }

    static let latencyMilliseconds = 4000

    @Test(
        "a worker killed while a request of the sync is in flight leaves exactly one contact and one matter",
        arguments: Boundary.allCases)
    func killedInFlight(_ boundary: Boundary) throws {
        try MatterSyncFixture.with { fixture in
            // Searches only where the boundary is the search: otherwise the create comes first.
            let client = try fixture.client(email: boundary == .contactSearch ? "crash@example.test" : nil)
            let matter = try fixture.matter(client: client)
            let mark = try fixture.logMark()
            try fixture.sandbox.addFault([
                "path_prefix": boundary.faultPrefix, "latency_ms": Self.latencyMilliseconds,
            ])
            // Longer than a held request, so that a re-run never gives up on a create still in flight.
            let settle = Double(Self.latencyMilliseconds) / 1000 * 2
            let first = try KillableWorker.sync(fixture, settleSeconds: settle)
            let job = try fixture.enqueue(
                SyncJobs.syncMatter, key: SyncJobs.matterKey(matter), payload: SyncMatterPayload(matterID: matter),
                maxAttempts: 30)
            try Processes.waitFor("the request to be in flight", timeout: 60) {
                try Self.inFlight(boundary, fixture, client: client, matter: matter, job: job)
            }
            // Well inside the held request.
            Thread.sleep(forTimeInterval: 0.5)
            let answered = try fixture.requests(after: mark)
            if boundary == .contactSearch {
                // Both searches (email, then phone + name) are held by the fault on /contacts: on a
                // loaded machine the first may be answered by now. What matters is that the kill
                // comes before anything is created.
                let intents = try fixture.seed.connection.execute(
                    "SELECT count(*) AS n FROM smokeball_sync_intents WHERE local_id = $1", [client]
                ).single().int("n")
                #expect(intents == 0, "\(answered)")
            } else {
                #expect(
                    !answered.contains { $0.contains(boundary.faultPrefix) && !$0.hasPrefix("GET /mattertypes") },
                    "\(answered)")
            }
            first.kill9()
            try fixture.sandbox.clearFaults()
            let second = try KillableWorker.sync(fixture, settleSeconds: settle)
            defer { try? second.stop() }
            try Processes.waitFor("the job to succeed after the crash", timeout: 120) {
                let status = try fixture.seed.connection.execute("SELECT status FROM jobs WHERE id = $1", [job])
                    .single().string("status")
                if status == "dead" { throw HarnessError("the job died: \(second.logText)") }
                return status == "succeeded"
            }
            // Whatever the killed request did has landed by now.
            Thread.sleep(forTimeInterval: Double(Self.latencyMilliseconds) / 1000)
            let requests = try fixture.requests(after: mark)
            let contacts = try fixture.contacts(externalSystemID: client)
            let matters = try fixture.matters(externalSystemID: matter)
            let attempts = try fixture.seed.connection.execute("SELECT attempts FROM jobs WHERE id = $1", [job])
                .single().int("attempts")
            print(
                "crash during \(boundary): contacts \(contacts.count), matters \(matters.count), "
                    + "\(requests.count) requests over \(attempts) attempts (\(requests.joined(separator: ", ")))")
            #expect(contacts.count == 1)
            #expect(matters.count == 1)
            let clientRow = try fixture.row("clients", client)
            #expect(try clientRow.optionalString("smokeball_contact_id") == contacts.first?.id)
            let matterRow = try fixture.row("matters", matter)
            #expect(try matterRow.optionalString("smokeball_matter_id") == matters.first?.id)
            #expect(try matterRow.optionalString("smokeball_link_status") == "confirmed")
            #expect(matters.first?.clients?.map(\.id) == [contacts.first?.id])
            let open = try fixture.seed.connection.execute(
                "SELECT count(*) AS n FROM smokeball_sync_intents WHERE state IN ('intended', 'accepted')"
            ).single().int("n")
            #expect(open == 0)
        }
    }

    /// Whether the sync has reached the boundary's request (which the fault holds).
    static func inFlight(
        _ boundary: Boundary, _ fixture: MatterSyncFixture, client: UUID, matter: UUID, job: UUID
    ) throws -> Bool {
        let connection = fixture.seed.connection
        switch boundary {
        case .contactSearch:
            // The search is the first request: running for a moment means it has been sent.
            // (started_at, not updated_at: heartbeats move updated_at every second.)
            let running = try connection.execute(
                """
                SELECT status = 'running' AND now() - started_at > interval '1 second' AS ready FROM jobs WHERE id = $1
                """,
                [job]
            ).single().bool("ready")
            return running
        case .contactCreate, .matterCreate:
            // The intent is committed just before the create is sent.
            return try connection.execute(
                "SELECT 1 FROM smokeball_sync_intents WHERE local_id = $1 AND state = 'intended'",
                [boundary == .contactCreate ? client : matter]
            ).rowCount == 1
        case .matterConfirm:
            // The Link id is stored as pending just before the read-back.
            return try connection.execute(
                "SELECT 1 FROM matters WHERE id = $1 AND smokeball_link_status = 'pending'", [matter]
            ).rowCount == 1
        }
    }
}
