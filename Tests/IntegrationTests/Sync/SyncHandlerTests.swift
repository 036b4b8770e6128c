import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// The sync route's handler against a real migrated database, called without sockets: firm A
/// (admin, standard user) and firm B, each with a matter. No worker runs: the route only
/// enqueues and reads jobs, and the tests look at the rows it leaves.
struct SyncFixture {
    let database: ServiceDatabase
    let seed: Seed
    let firm: Seed.FirmWithUsers
    let other: Seed.FirmWithUsers
    let matter: UUID
    let otherMatter: UUID
    let handler: SyncHandler

    init(_ database: ServiceDatabase, configured: Bool = true, connected: Bool = true) throws {
        self.database = database
        seed = try Seed(database)
        firm = try seed.firmWithUsers("Firm A")
        other = try seed.firmWithUsers("Firm B")
        matter = try seed.matter(firm: firm.id)
        otherMatter = try seed.matter(firm: other.id)
        handler = SyncHandler(
            authenticator: Authenticator(secret: Array(TestEnvironment.jwtSecret.utf8)),
            database: Database(url: database.appURL), smokeballConfigured: configured)
        if connected {
            try connect(firm.id)
            try connect(other.id)
        }
    }

    static func with<T>(configured: Bool = true, connected: Bool = true, _ body: (SyncFixture) throws -> T) throws
        -> T
    {
        try ServiceDatabase.with { database in
            try body(try SyncFixture(database, configured: configured, connected: connected))
        }
    }

    /// A Smokeball connection row as the callback leaves it (the columns are what the route reads).
    func connect(
        _ firm: UUID, active: Bool = true, token: Bool = true, reconnectReason: String? = nil,
        refreshExpiresAt: String = "2030-02-01T00:00:00Z"
    ) throws {
        try seed.asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO firm_integrations (firm_id, platform, access_token, refresh_token, token_expires_at,
                    refresh_token_expires_at, is_active, needs_reconnect_reason, connected_at)
                VALUES ($1, 'smokeball', CASE WHEN $2 THEN '\\x01'::bytea END, '\\x02'::bytea, '2030-01-01T00:00:00Z',
                    $3::timestamptz, $4, $5, now())
                ON CONFLICT (firm_id, platform) DO UPDATE SET access_token = excluded.access_token,
                    refresh_token_expires_at = excluded.refresh_token_expires_at, is_active = excluded.is_active,
                    needs_reconnect_reason = excluded.needs_reconnect_reason
                """, [firm, token, refreshExpiresAt, active, reconnectReason])
        }
    }

    func call(
        _ method: String, user: UUID?, body: String? = nil, contentType: String = "application/json",
        query: [String: String] = [:]
    ) -> Response {
        var headers: [String: String] = [:]
        if let user { headers["authorization"] = "Bearer " + TestEnvironment.token(subject: user.uuidString) }
        if body != nil { headers["content-type"] = contentType }
        let request = Request(
            method: method, path: "/api/v1/integrations/smokeball/sync", query: query, headers: headers,
            body: Array((body ?? "").utf8), requestID: "test-request")
        return respond(to: request, with: handler, log: Logger(route: "sync")).0
    }

    func post(_ body: String, user: UUID? = nil) -> Response { call("POST", user: user ?? firm.standard, body: body) }

    /// Every job's row as the superuser sees it, whatever its firm.
    func jobs() throws -> [Row] {
        try database.admin().execute(
            "SELECT id, firm_id, kind, key, priority, status, payload::text AS payload, created_by FROM jobs ORDER BY created_at"
        ).rows
    }
}

@Suite struct SyncHandlerTests {
    static func json(_ response: Response) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }

    static func errorCode(_ response: Response) throws -> String? {
        (try json(response)["error"] as? [String: Any])?["code"] as? String
    }

    static func errorMessage(_ response: Response) throws -> String? {
        (try json(response)["error"] as? [String: Any])?["message"] as? String
    }

    static func payload(_ row: Row) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(row.string("payload").utf8)) as? [String: Any])
    }

    // MARK: POST

    @Test func aStandardUserSyncsAMatterAndGets202WithThePendingJob() throws {
        try SyncFixture.with { (fixture) throws in
            let id = fixture.matter.uuidString.lowercased()
            let response = fixture.post(#"{"matter_id": "\#(id)"}"#)
            #expect(response.status.code == 202)
            let body = try Self.json(response)
            #expect(body["status"] as? String == "pending")
            let jobs = try fixture.jobs()
            let job = try #require(jobs.first)
            #expect(jobs.count == 1)
            let jobID = try job.uuid("id").uuidString.lowercased()
            #expect(body["job_id"] as? String == jobID)
            #expect(try job.uuid("firm_id") == fixture.firm.id)
            #expect(try job.string("kind") == "sync_matter")
            #expect(try job.optionalString("key") == "matter:" + id)
            #expect(try job.int("priority") == 0)
            // Payloads are the contract's Codable types (JSONEncoder writes UUIDs in capitals).
            #expect(try (Self.payload(job)["matter_id"] as? String).flatMap(UUID.init(uuidString:)) == fixture.matter)
            #expect(try job.optionalUUID("created_by") == fixture.firm.standard)
        }
    }

    @Test func twoClicksOnTheSameMatterCoalesceIntoOneJob() throws {
        try SyncFixture.with { (fixture) throws in
            let body = #"{"matter_id": "\#(fixture.matter.uuidString)", "action": "sync_matter"}"#
            let first = try Self.json(fixture.post(body))
            let second = try Self.json(fixture.post(body, user: fixture.firm.admin))
            #expect(first["job_id"] as? String != nil)
            #expect(first["job_id"] as? String == second["job_id"] as? String)
            #expect(try fixture.jobs().count == 1)
        }
    }

    @Test func anotherFirmsMatterOrAnUnknownOneIs404AndEnqueuesNothing() throws {
        try SyncFixture.with { (fixture) throws in
            for matter in [fixture.otherMatter, UUID()] {
                let response = fixture.post(#"{"matter_id": "\#(matter)"}"#, user: fixture.firm.admin)
                #expect(response.status.code == 404)
                #expect(try Self.errorCode(response) == "not_found")
            }
            #expect(try fixture.jobs().isEmpty)
        }
    }

    @Test func bulkSyncsAreForFirmAdminsAndEnqueueOneBulkJob() throws {
        try SyncFixture.with { (fixture) throws in
            let second = try fixture.seed.matter(firm: fixture.firm.id)
            let list = #"{"action": "sync_matters", "matter_ids": ["\#(fixture.matter)", "\#(second)"]}"#
            for body in [list, #"{"action": "sync_all"}"#] {
                let refused = fixture.post(body, user: fixture.firm.standard)
                #expect(refused.status.code == 403)
                #expect(try Self.errorCode(refused) == "forbidden")
            }
            #expect(try fixture.jobs().isEmpty)

            let listed = fixture.post(list, user: fixture.firm.admin)
            #expect(listed.status.code == 202)
            let all = fixture.post(#"{"action": "sync_all"}"#, user: fixture.firm.admin)
            #expect(all.status.code == 202)
            // sync_all has a key: a second click joins the pending job. A list has none.
            let again = fixture.post(#"{"action": "sync_all"}"#, user: fixture.firm.admin)
            #expect(try Self.json(again)["job_id"] as? String == Self.json(all)["job_id"] as? String)

            let jobs = try fixture.jobs()
            #expect(jobs.count == 2)
            let bulk = try #require(jobs.first)
            #expect(try bulk.string("kind") == "sync_matters")
            #expect(try bulk.optionalString("key") == nil)
            #expect(try bulk.int("priority") == 2)
            let listedIDs = try (Self.payload(bulk)["matter_ids"] as? [String])?.compactMap(UUID.init(uuidString:))
            #expect(listedIDs == [fixture.matter, second])
            let every = try #require(jobs.last)
            #expect(try every.string("kind") == "sync_matters")
            #expect(try every.optionalString("key") == "all")
            #expect(try every.int("priority") == 2)
            #expect(try Self.payload(every)["all"] as? Bool == true)
        }
    }

    @Test func aBulkListNamingAnotherFirmsMatterIs404NamingItAndEnqueuesNothing() throws {
        try SyncFixture.with { (fixture) throws in
            let second = try fixture.seed.matter(firm: fixture.firm.id)
            let body =
                #"{"action": "sync_matters", "matter_ids": ["\#(fixture.matter)", "\#(second)", "\#(fixture.otherMatter)"]}"#
            let response = fixture.post(body, user: fixture.firm.admin)
            #expect(response.status.code == 404)
            #expect(try Self.errorCode(response) == "not_found")
            #expect(try Self.errorMessage(response)?.hasPrefix("matter_ids[2] ") == true)
            #expect(try fixture.jobs().isEmpty)
        }
    }

    @Test func pullMattersIsForAnyFirmUser() throws {
        try SyncFixture.with { (fixture) throws in
            let response = fixture.post(#"{"action": "pull_matters"}"#, user: fixture.firm.standard)
            #expect(response.status.code == 202)
            let job = try #require(try fixture.jobs().first)
            #expect(try job.string("kind") == "pull_matters")
            #expect(try job.optionalString("key") == "firm")
            #expect(try job.int("priority") == 0)
        }
    }

    /// Never connected, disconnected (inactive, no token), waiting for a reconnect, or with an
    /// expired refresh token: nothing could run the job.
    @Test func aFirmThatIsNotConnectedGets409AndNoJob() throws {
        try SyncFixture.with(connected: false) { (fixture) throws in
            let body = #"{"matter_id": "\#(fixture.matter)"}"#
            var answers = [fixture.post(body)]
            try fixture.connect(fixture.firm.id, active: false)
            answers.append(fixture.post(body))
            try fixture.connect(fixture.firm.id, token: false)
            answers.append(fixture.post(body))
            try fixture.connect(fixture.firm.id, reconnectReason: "invalid_grant")
            answers.append(fixture.post(body))
            try fixture.connect(fixture.firm.id, refreshExpiresAt: "2020-01-01T00:00:00Z")
            answers.append(fixture.post(body))
            for response in answers {
                #expect(response.status.code == 409)
                #expect(try Self.errorCode(response) == "not_connected")
            }
            #expect(try fixture.jobs().isEmpty)
            try fixture.connect(fixture.firm.id)
            #expect(fixture.post(body).status.code == 202)
        }
    }

    @Test func aServerWithoutSmokeballCredentialsAnswers503WithTheFAQMessage() throws {
        try SyncFixture.with(configured: false) { (fixture) throws in
            let response = fixture.post(#"{"matter_id": "\#(fixture.matter)"}"#)
            #expect(response.status.code == 503)
            #expect(try Self.errorCode(response) == "not_configured")
            #expect(try Self.errorMessage(response) == "Smokeball integration is not configured")
            #expect(try fixture.jobs().isEmpty)
            // What is already there can still be read.
            #expect(fixture.call("GET", user: fixture.firm.standard).status.code == 200)
        }
    }

    static let validID = "6f1c2a4e-9d3b-4c8a-8e2f-1a2b3c4d5e6f"

    @Test(arguments: [
        ("{not json", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_json"),
        ("", 400, "invalid_json"),
        (#"{"action": "sync_everything"}"#, 400, "invalid_action"),
        (#"{"action": 5, "matter_id": "\#(validID)"}"#, 400, "invalid_action"),
        (#"{"action": null, "matter_id": "\#(validID)"}"#, 400, "invalid_action"),
        ("{}", 400, "missing_field"),
        (#"{"action": "sync_matters"}"#, 400, "missing_field"),
        (#"{"matter_id": "nope"}"#, 400, "invalid_field"),
        (#"{"matter_id": 5}"#, 400, "invalid_field"),
        (#"{"matter_id": ["\#(validID)"]}"#, 400, "invalid_field"),
        (#"{"matter_id": "\#(validID)", "force": true}"#, 400, "unknown_field"),
        (#"{"action": "sync_all", "matter_ids": ["\#(validID)"]}"#, 400, "unknown_field"),
        (#"{"action": "pull_matters", "matter_id": "\#(validID)"}"#, 400, "unknown_field"),
        (#"{"action": "sync_matters", "matter_ids": []}"#, 400, "invalid_field"),
        (#"{"action": "sync_matters", "matter_ids": "\#(validID)"}"#, 400, "invalid_field"),
        (#"{"action": "sync_matters", "matter_ids": [5]}"#, 400, "invalid_field"),
        (
            #"{"action": "sync_matters", "matter_ids": ["\#(validID)", "\#(validID.uppercased())"]}"#, 400,
            "invalid_field"
        ),
    ])
    func malformedBodiesAre400WithACodeAndEnqueueNothing(body: String, status: Int, code: String) throws {
        try SyncFixture.with { (fixture) throws in
            let response = fixture.post(body, user: fixture.firm.admin)
            #expect(response.status.code == status)
            #expect(try Self.errorCode(response) == code)
            #expect(try !(Self.errorMessage(response) ?? "").isEmpty)
            #expect(try fixture.jobs().isEmpty)
        }
    }

    @Test func moreThan500MatterIDsAreRefusedAnd500AreNot() throws {
        try SyncFixture.with { (fixture) throws in
            let ids = (0..<501).map { _ in "\"\(UUID().uuidString)\"" }
            let tooMany = fixture.post(
                #"{"action": "sync_matters", "matter_ids": [\#(ids.joined(separator: ","))]}"#, user: fixture.firm.admin
            )
            #expect(tooMany.status.code == 400)
            #expect(try Self.errorCode(tooMany) == "invalid_field")
            // 500 well-formed ids pass the shape check; these matters do not exist, so 404.
            let most = fixture.post(
                #"{"action": "sync_matters", "matter_ids": [\#(ids.dropLast().joined(separator: ","))]}"#,
                user: fixture.firm.admin)
            #expect(most.status.code == 404)
            #expect(try Self.errorMessage(most)?.hasPrefix("matter_ids[0] ") == true)
        }
    }

    @Test func otherContentTypesAre415() throws {
        try SyncFixture.with { (fixture) throws in
            let response = fixture.call(
                "POST", user: fixture.firm.admin, body: "matter_id=\(fixture.matter)",
                contentType: "application/x-www-form-urlencoded")
            #expect(response.status.code == 415)
            #expect(try fixture.jobs().isEmpty)
        }
    }

    /// Valid bodies broken at random, seeded (SYNC_FUZZ_SEED replays a failure): cut short,
    /// a field given a value of the wrong type, or an unknown field added. Each is a 400 with a
    /// code, never a 500, and none leaves a job.
    @Test func fuzzedBodiesAre400AndNeverEnqueue() throws {
        let seed = SeededGenerator.seed(environment: "SYNC_FUZZ_SEED", default: 0x5EED_12)
        var random = SeededGenerator(seed: seed)
        try SyncFixture.with { (fixture) throws in
            let id = fixture.matter.uuidString.lowercased()
            let valid: [[String: Any]] = [
                ["matter_id": id], ["action": "sync_matter", "matter_id": id],
                ["action": "sync_matters", "matter_ids": [id]], ["action": "sync_all"], ["action": "pull_matters"],
            ]
            let wrongValues: [Any] = [
                NSNull(), 0, 3.5, true, "", "not-a-uuid", [Any](), ["x": 1], [1, 2], String(repeating: "a", count: 300),
            ]
            for round in 0..<60 {
                var body = random.pick(valid)
                let text: String
                switch Int.random(in: 0..<3, using: &random) {
                case 0:
                    let full = String(
                        decoding: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]),
                        as: UTF8.self)
                    text = String(full.prefix(Int.random(in: 0..<(full.count - 1), using: &random)))
                case 1:
                    let key = random.pick(Array(body.keys))
                    body[key] = random.pick(wrongValues)
                    text = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
                default:
                    // A field no action takes, with any value, even a valid one.
                    body[random.pick(["force", "matter", "ids", "Action", "matterId", "x"])] =
                        random.pick(wrongValues + [id])
                    text = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
                }
                let response = fixture.post(text, user: fixture.firm.admin)
                #expect(
                    response.status.code == 400, "seed \(seed) round \(round): \(text) gave \(response.status.code)")
                #expect(try Self.errorCode(response) != nil)
            }
            #expect(try fixture.jobs().isEmpty)
        }
    }

    @Test func otherMethodsAre405AndCallersMustAuthenticate() throws {
        try SyncFixture.with { (fixture) throws in
            for method in ["PUT", "PATCH", "DELETE"] {
                let response = fixture.call(method, user: fixture.firm.admin, body: "{}")
                #expect(response.status.code == 405)
                #expect(response.header("Allow") == "GET, HEAD, POST")
            }
            let anonymous = fixture.call("POST", user: nil, body: #"{"matter_id": "\#(fixture.matter)"}"#)
            #expect(anonymous.status.code == 401)
            let loner = try fixture.seed.user(firm: nil)
            let firmless = fixture.call("POST", user: loner, body: #"{"matter_id": "\#(fixture.matter)"}"#)
            #expect(firmless.status.code == 403)
            #expect(try Self.errorCode(firmless) == "no_firm")
            #expect(fixture.call("GET", user: loner).status.code == 403)
            #expect(try fixture.jobs().isEmpty)
        }
    }

    // MARK: GET ?job_id=

    @Test func aRunningJobShowsItsProgressAndAnEstimate() throws {
        try SyncFixture.with { (fixture) throws in
            let posted = try Self.json(fixture.post(#"{"action": "sync_all"}"#, user: fixture.firm.admin))
            let jobID = try #require(posted["job_id"] as? String)
            let pending = try Self.json(fixture.call("GET", user: fixture.firm.standard, query: ["job_id": jobID]))
            #expect(pending["status"] as? String == "pending")
            #expect(pending["eta_seconds"] is NSNull)
            #expect(pending["started_at"] is NSNull)
            #expect(pending["result"] is NSNull)

            // 10 of 30 done in 100 s: 20 left at 10 s each.
            try fixture.database.admin().execute(
                """
                UPDATE jobs SET status = 'running', attempts = 1, lease_id = gen_random_uuid(),
                    lease_until = now() + interval '1 minute', run_after = now() + interval '1 minute',
                    started_at = now() - interval '100 seconds', progress_done = 10, progress_total = 30,
                    progress_failed = 2
                WHERE id = $1
                """, [jobID])
            let response = fixture.call("GET", user: fixture.firm.standard, query: ["job_id": jobID])
            #expect(response.status.code == 200)
            let running = try Self.json(response)
            #expect(running["job_id"] as? String == jobID)
            #expect(running["kind"] as? String == "sync_matters")
            #expect(running["status"] as? String == "running")
            let progress = try #require(running["progress"] as? [String: Any])
            #expect(progress["done"] as? Int == 10)
            #expect(progress["total"] as? Int == 30)
            #expect(progress["failed"] as? Int == 2)
            // The seconds between the update and the read add a little.
            let eta = try #require(running["eta_seconds"] as? Int)
            #expect((200...230).contains(eta), "eta \(eta)")
            #expect(running["started_at"] is String)
            #expect(running["finished_at"] is NSNull)
        }
    }

    @Test func aFinishedJobPassesItsResultThroughAsStored() throws {
        try SyncFixture.with { (fixture) throws in
            let posted = try Self.json(fixture.post(#"{"action": "pull_matters"}"#))
            let jobID = try #require(posted["job_id"] as? String)
            let result =
                #"{"matters": [{"smokeball_matter_id": "sb-1", "matter_id": null, "number": "A-1"}], "total": 1, "ratio": 0.5}"#
            try fixture.database.admin().execute(
                """
                UPDATE jobs SET status = 'succeeded', attempts = 1, started_at = now() - interval '3 seconds',
                    finished_at = now(), result = $2::jsonb, progress_done = 1, progress_total = 1
                WHERE id = $1
                """, [jobID, SQLValue.json(result)])
            let body = try Self.json(fixture.call("GET", user: fixture.firm.standard, query: ["job_id": jobID]))
            #expect(body["status"] as? String == "succeeded")
            #expect(body["eta_seconds"] is NSNull)
            #expect(body["error"] is NSNull)
            #expect(body["finished_at"] is String)
            func canonical(_ value: Any) throws -> Data {
                try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
            }
            let stored = try JSONSerialization.jsonObject(with: Data(result.utf8))
            #expect(try canonical(try #require(body["result"])) == canonical(stored))
        }
    }

    @Test func aDeadJobShowsItsError() throws {
        try SyncFixture.with { (fixture) throws in
            let jobID = try #require(
                try Self.json(fixture.post(#"{"matter_id": "\#(fixture.matter)"}"#))["job_id"] as? String)
            try fixture.database.admin().execute(
                """
                UPDATE jobs SET status = 'dead', attempts = 5, finished_at = now(),
                    last_error = 'smokeball_unavailable: Smokeball answered 503 on every attempt'
                WHERE id = $1
                """, [jobID])
            let body = try Self.json(fixture.call("GET", user: fixture.firm.standard, query: ["job_id": jobID]))
            #expect(body["status"] as? String == "dead")
            #expect(body["error"] as? String == "smokeball_unavailable: Smokeball answered 503 on every attempt")
        }
    }

    @Test func anotherFirmsJobOrAnUnknownOneIs404() throws {
        try SyncFixture.with { (fixture) throws in
            let theirs = try #require(
                try Self.json(fixture.post(#"{"action": "pull_matters"}"#, user: fixture.other.standard))["job_id"]
                    as? String)
            for jobID in [theirs, UUID().uuidString] {
                let response = fixture.call("GET", user: fixture.firm.admin, query: ["job_id": jobID])
                #expect(response.status.code == 404)
                #expect(try Self.errorCode(response) == "not_found")
            }
            #expect(fixture.call("GET", user: fixture.other.admin, query: ["job_id": theirs]).status.code == 200)
            let malformed = fixture.call("GET", user: fixture.firm.admin, query: ["job_id": "17"])
            #expect(malformed.status.code == 400)
            #expect(try Self.errorCode(malformed) == "invalid_job_id")
            let mixed = fixture.call(
                "GET", user: fixture.firm.admin, query: ["job_id": theirs, "matter_id": fixture.matter.uuidString])
            #expect(mixed.status.code == 400)
            #expect(try Self.errorCode(mixed) == "invalid_query")
        }
    }

    // MARK: GET history

    /// Inserts `count` history rows for `matter` (nil: none), three to a timestamp (so the id
    /// breaks ties), at microsecond times; returns their ids newest first as the route orders them.
    static func insertHistory(_ fixture: SyncFixture, firm: UUID, matter: UUID?, count: Int, action: String)
        throws -> [UUID]
    {
        try fixture.seed.asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO integration_sync_logs (firm_id, matter_id, action, status, external_id, details, created_at)
                SELECT $1, $2::uuid, $3, 'success', 'sb-' || i, jsonb_build_object('n', i),
                    timestamptz '2026-11-01 10:00:00.123457+00' + (i / 3) * interval '1.000001 seconds'
                FROM generate_series(1, $4) AS i
                """, [firm, matter, action, count])
        }
        return try fixture.database.admin().execute(
            """
            SELECT id FROM integration_sync_logs WHERE firm_id = $1 AND ($2::uuid IS NULL OR matter_id = $2)
            ORDER BY created_at DESC, id DESC
            """, [firm, matter]
        ).rows.map { try $0.uuid("id") }
    }

    /// Follows next_cursor from the first page to the last; the ids in the order they came.
    static func readAllPages(_ fixture: SyncFixture, query: [String: String]) throws -> (ids: [UUID], pages: Int) {
        var ids: [UUID] = []
        var pages = 0
        var cursor: String?
        repeat {
            var parameters = query
            if let cursor { parameters["cursor"] = cursor }
            let response = fixture.call("GET", user: fixture.firm.standard, query: parameters)
            #expect(response.status.code == 200)
            let body = try json(response)
            let entries = try #require(body["entries"] as? [[String: Any]])
            ids += entries.compactMap { ($0["id"] as? String).flatMap(UUID.init(uuidString:)) }
            pages += 1
            cursor = body["next_cursor"] as? String
        } while cursor != nil && pages < 100
        return (ids, pages)
    }

    @Test func aMattersHistoryPagesThroughACursorWithoutGapsOrRepeats() throws {
        try SyncFixture.with { (fixture) throws in
            let expected = try Self.insertHistory(
                fixture, firm: fixture.firm.id, matter: fixture.matter, count: 47, action: "matter.created")
            let second = try fixture.seed.matter(firm: fixture.firm.id)
            _ = try Self.insertHistory(
                fixture, firm: fixture.firm.id, matter: second, count: 5, action: "document.created")
            _ = try Self.insertHistory(
                fixture, firm: fixture.other.id, matter: fixture.otherMatter, count: 5, action: "contact.created")

            let (ids, pages) = try Self.readAllPages(
                fixture, query: ["matter_id": fixture.matter.uuidString, "limit": "20"])
            #expect(pages == 3)
            #expect(ids == expected)

            // The same with limit 7 and the default (20): a page boundary inside a tie.
            #expect(
                try Self.readAllPages(fixture, query: ["matter_id": fixture.matter.uuidString, "limit": "7"]).ids
                    == expected)
            let first = try Self.json(
                fixture.call("GET", user: fixture.firm.standard, query: ["matter_id": fixture.matter.uuidString]))
            #expect((first["entries"] as? [Any])?.count == 20)

            let entry = try #require((first["entries"] as? [[String: Any]])?.first)
            #expect(entry["action"] as? String == "matter.created")
            #expect(entry["status"] as? String == "success")
            #expect(entry["matter_id"] as? String == fixture.matter.uuidString.lowercased())
            #expect(entry["upload_id"] is NSNull)
            #expect(entry["error_message"] is NSNull)
            #expect((entry["external_id"] as? String)?.hasPrefix("sb-") == true)
            #expect((entry["details"] as? [String: Any])?["n"] as? Int != nil)
            #expect(entry["created_at"] is String)
        }
    }

    @Test func withoutAMatterTheHistoryIsTheWholeFirmsAndNoOtherFirms() throws {
        try SyncFixture.with { (fixture) throws in
            let second = try fixture.seed.matter(firm: fixture.firm.id)
            _ = try Self.insertHistory(fixture, firm: fixture.firm.id, matter: fixture.matter, count: 12, action: "a.b")
            _ = try Self.insertHistory(fixture, firm: fixture.firm.id, matter: second, count: 9, action: "a.b")
            _ = try Self.insertHistory(fixture, firm: fixture.firm.id, matter: nil, count: 4, action: "a.b")
            _ = try Self.insertHistory(
                fixture, firm: fixture.other.id, matter: fixture.otherMatter, count: 6, action: "x.y")
            let expected = try Self.insertHistory(fixture, firm: fixture.firm.id, matter: nil, count: 0, action: "a.b")
            #expect(expected.count == 25)
            let (ids, pages) = try Self.readAllPages(fixture, query: ["limit": "10"])
            #expect(pages == 3)
            #expect(ids == expected)
        }
    }

    @Test func anotherFirmsMatterHasNoHistoryHereButA404() throws {
        try SyncFixture.with { (fixture) throws in
            _ = try Self.insertHistory(
                fixture, firm: fixture.other.id, matter: fixture.otherMatter, count: 3, action: "matter.created")
            for matter in [fixture.otherMatter, UUID()] {
                let response = fixture.call("GET", user: fixture.firm.admin, query: ["matter_id": matter.uuidString])
                #expect(response.status.code == 404)
                #expect(try Self.errorCode(response) == "not_found")
            }
            // A matter of the firm without history is an empty page.
            let empty = try Self.json(
                fixture.call("GET", user: fixture.firm.standard, query: ["matter_id": fixture.matter.uuidString]))
            #expect((empty["entries"] as? [Any])?.isEmpty == true)
            #expect(empty["next_cursor"] is NSNull)
        }
    }

    @Test func badLimitsMatterIDsAndTamperedCursorsAre400() throws {
        try SyncFixture.with { (fixture) throws in
            _ = try Self.insertHistory(fixture, firm: fixture.firm.id, matter: fixture.matter, count: 5, action: "a.b")
            let page = try Self.json(fixture.call("GET", user: fixture.firm.standard, query: ["limit": "2"]))
            let cursor = try #require(page["next_cursor"] as? String)
            // The genuine cursor works.
            #expect(
                fixture.call("GET", user: fixture.firm.standard, query: ["limit": "2", "cursor": cursor]).status.code
                    == 200)
            var flipped = Array(cursor)
            flipped[0] = flipped[0] == "A" ? "B" : "A"
            let cases: [([String: String], String)] = [
                (["limit": "0"], "invalid_limit"), (["limit": "101"], "invalid_limit"),
                (["limit": "ten"], "invalid_limit"), (["limit": "-1"], "invalid_limit"),
                (["matter_id": "nope"], "invalid_matter_id"),
                (["cursor": "not a cursor"], "invalid_cursor"),
                (["cursor": String(cursor.dropLast(2))], "invalid_cursor"),
                (["cursor": cursor + "AA"], "invalid_cursor"), (["cursor": String(flipped)], "invalid_cursor"),
                (["cursor": String(repeating: "_", count: 34)], "invalid_cursor"),
            ]
            for (query, code) in cases {
                let response = fixture.call("GET", user: fixture.firm.standard, query: query)
                #expect(response.status.code == 400, "\(query)")
                #expect(try Self.errorCode(response) == code, "\(query)")
            }
            #expect(
                fixture.call("GET", user: fixture.firm.standard, query: ["limit": "100"]).status.code == 200)
        }
    }

    @Test func aCursorRoundTripsAndRefusesWhatItDidNotMake() {
        let cursor = HistoryCursor(microseconds: 1_795_000_000_123_457, id: UUID())
        #expect(HistoryCursor(text: cursor.text) == cursor)
        #expect(HistoryCursor(text: HistoryCursor(microseconds: 0, id: cursor.id).text)?.microseconds == 0)
        // Out of the exact float8 range, or negative: not one the route gave out.
        #expect(HistoryCursor(text: HistoryCursor(microseconds: 1 << 53, id: cursor.id).text) == nil)
        #expect(HistoryCursor(text: HistoryCursor(microseconds: -1, id: cursor.id).text) == nil)
        #expect(HistoryCursor(text: "") == nil)
    }

    @Test func theEstimateIsNullUntilItCanBeComputed() throws {
        try QueueFixture.with { (fixture) throws in
            let id = try fixture.enqueue(as: fixture.firmA.admin)
            try fixture.database.admin().execute(
                """
                UPDATE jobs SET status = 'running', attempts = 1, lease_id = gen_random_uuid(),
                    lease_until = now() + interval '1 minute', run_after = now() + interval '1 minute',
                    started_at = now() - interval '60 seconds'
                WHERE id = $1
                """, [id])
            func eta(done: Int, total: Int?) throws -> Int? {
                try fixture.database.admin().execute(
                    "UPDATE jobs SET progress_done = $2, progress_total = $3 WHERE id = $1", [id, done, total])
                let record = try #require(try fixture.read(as: fixture.firmA.admin, id))
                return SyncHandler.etaSeconds(record, now: record.startedAt!.addingTimeInterval(60))
            }
            #expect(try eta(done: 0, total: 10) == nil)
            #expect(try eta(done: 3, total: nil) == nil)
            #expect(try eta(done: 3, total: 9) == 120)
            #expect(try eta(done: 9, total: 9) == 0)
        }
    }
}

/// Migration 034: `jobs.started_at` is set by the claim that starts a run and kept by later ones.
@Suite struct JobStartedAtTests {
    @Test func theFirstClaimSetsStartedAtARescueKeepsItAndARetryStartsAgain() throws {
        try QueueFixture.with { (fixture) throws in
            let id = try fixture.enqueue(as: fixture.firmA.admin, kind: "sync_matter")
            func startedAt() throws -> Date? {
                try fixture.database.admin().execute("SELECT started_at FROM jobs WHERE id = $1", [id]).single()
                    .optionalDate("started_at")
            }
            #expect(try startedAt() == nil)
            let first = try #require(try fixture.queue.claim(kinds: ["sync_matter"], leaseSeconds: 30))
            let started = try #require(try startedAt())
            // A failed attempt goes back to pending; the next claim continues the same run.
            _ = try fixture.queue.fail(first, error: JobError(.failed, "boom"), backoff: .standard)
            try fixture.makeDue(id)
            let second = try #require(try fixture.queue.claim(kinds: ["sync_matter"], leaseSeconds: 30))
            #expect(second.attempts == 2)
            #expect(try startedAt() == started)
            // Dead, then retried: attempts start from 0, and so does the run.
            _ = try fixture.queue.fail(second, error: JobError(.failed, "boom", retryable: false), backoff: .standard)
            let retried = try fixture.app.transaction { connection in
                _ = try Tenancy.enter(connection, userID: fixture.firmA.admin)
                return try JobQueue.retry(connection, jobID: id)
            }
            #expect(retried == id)
            _ = try #require(try fixture.queue.claim(kinds: ["sync_matter"], leaseSeconds: 30))
            #expect(try #require(try startedAt()) > started)
            #expect(try fixture.read(as: fixture.firmA.admin, id)?.startedAt != nil)
        }
    }
}
