import Foundation
import HTTPClient
import TestSupport
import Testing

/// `sync` through real nginx and the real route executable (as `scripts/run` starts it, with
/// Smokeball credentials in its environment), over HTTP, against a real migrated database.
@Suite(.serialized) struct SyncEndToEndTests {
    static let path = "/api/v1/integrations/smokeball/sync"

    @Test func aClickIsAcceptedFollowedAndRecordedThroughNginx() throws {
        let database = try ServiceDatabase.create()
        defer { database.drop() }
        let seed = try Seed(database)
        let firm = try seed.firmWithUsers("End to End LLP")
        let other = try seed.firmWithUsers("Elsewhere LLP")
        let matter = try seed.matter(firm: firm.id)
        let otherMatter = try seed.matter(firm: other.id)
        let service = try RunningService(routes: ["sync"], databaseURL: database.appURL) { _, _ in
            [
                "SMOKEBALL_CLIENT_ID": "e2e-client", "SMOKEBALL_CLIENT_SECRET": "e2e-secret",
                "SMOKEBALL_API_KEY": "e2e-key",
            ]
        }
        defer { service.stop() }
        let user = TestEnvironment.token(subject: firm.standard.uuidString)
        let admin = TestEnvironment.token(subject: firm.admin.uuidString)
        let click = Array(#"{"matter_id": "\#(matter)"}"#.utf8)

        func post(_ body: [UInt8], token: String = user) throws -> HTTPResponse {
            try service.send("POST", Self.path, token: token, body: body, contentType: "application/json")
        }

        let early = try post(click)
        #expect(early.status == 409)
        #expect(early.errorCode == "not_connected")

        try seed.asFirm(firm.id) { connection in
            try connection.execute(
                """
                INSERT INTO firm_integrations (firm_id, platform, access_token, refresh_token, is_active, connected_at)
                VALUES ($1, 'smokeball', '\\x01'::bytea, '\\x02'::bytea, true, now())
                """, [firm.id])
        }
        let accepted = try post(click)
        #expect(accepted.status == 202)
        #expect(accepted.header("Cache-Control") == "no-store")
        #expect(accepted.header("Content-Type") == "application/json")
        let jobID = try #require(accepted.jsonObject["job_id"] as? String)
        #expect(accepted.jsonObject["status"] as? String == "pending")
        #expect(try post(click, token: admin).jsonObject["job_id"] as? String == jobID)

        let foreign = try post(Array(#"{"matter_id": "\#(otherMatter)"}"#.utf8))
        #expect(foreign.status == 404)
        let bulk = try post(Array(#"{"action": "sync_all"}"#.utf8))
        #expect(bulk.status == 403)
        #expect(try post(Array("{".utf8)).errorCode == "invalid_json")

        let job = try service.send("GET", Self.path + "?job_id=" + jobID, token: user)
        #expect(job.status == 200)
        #expect(job.header("Cache-Control") == "no-store")
        #expect(job.jsonObject["kind"] as? String == "sync_matter")
        #expect(job.jsonObject["status"] as? String == "pending")

        let history = try service.send("GET", Self.path + "?matter_id=\(matter)&limit=5", token: user)
        #expect(history.status == 200)
        #expect(history.header("Cache-Control") == "no-store")
        #expect((history.jsonObject["entries"] as? [Any])?.isEmpty == true)

        let delete = try service.send("DELETE", Self.path, token: admin)
        #expect(delete.status == 405)
        #expect(try service.send("POST", Self.path, body: click, contentType: "application/json").status == 401)

        // One job for two clicks, none for the refused requests.
        let jobs = try database.admin().execute("SELECT count(*) AS n FROM jobs").single().int("n")
        #expect(jobs == 1)
        // Request log lines carry no token and no query string.
        var lines: [String] = []
        try? Processes.waitFor("request log lines", timeout: 5) {
            lines = service.logLines("sync").filter { $0.contains(#""event":"request""#) }
            return lines.count >= 9
        }
        #expect(!lines.joined().contains(user))
        #expect(!lines.joined().contains("job_id="))
    }
}
