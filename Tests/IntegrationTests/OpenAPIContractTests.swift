import Basics
import Cryptography
import Foundation
import HTTPClient
import Integration
import PostgreSQL
import TestSupport
import Testing

/// docs/openapi.yaml against the routes' real answers: a `scripts/run` instance (routes, worker,
/// nginx, the Smokeball sandbox) is driven through each route's success and error answers over
/// HTTP, every answer is recorded, and Fixtures/openapi-check.py (Debian's python3-yaml and
/// python3-jsonschema, JSON Schema 2020-12) checks each one's status, headers, content type and
/// body against the document.
@Suite struct OpenAPIContractTests {
    static let prefix = "/api/v1/integrations/smokeball/"
    static let document = TestEnvironment.repositoryRoot.appendingPathComponent("docs/openapi.yaml").path
    static let checker = TestEnvironment.repositoryRoot.appendingPathComponent(
        "Tests/IntegrationTests/Fixtures/openapi-check.py"
    ).path

    /// Sends requests and keeps every answer for the checker.
    final class Recorder {
        let base: String
        let http: HTTPClient
        var answers: [[String: Any]] = []

        init(base: String) throws {
            self.base = base
            http = try HTTPClient()
        }

        /// `route` is the path's last part; `query` starts with `?` when given. The answer's
        /// status must be `expect`; `schema` names the component an undocumented method's answer
        /// follows.
        @discardableResult
        func send(
            _ method: String, _ route: String, query: String = "", token: String? = nil,
            headers: [(String, String)] = [], body: [UInt8] = [], contentType: String? = nil, expect: Int,
            schema: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
        ) throws -> HTTPResponse {
            var all = headers
            if let token { all.append(("Authorization", "Bearer " + token)) }
            if let contentType { all.append(("Content-Type", contentType)) }
            let path = OpenAPIContractTests.prefix + route
            let response = try http.send(
                HTTPRequest(method: method, url: base + path + query, headers: all, body: body, timeout: 30))
            #expect(
                response.status == expect,
                "\(method) \(route)\(query): \(String(decoding: response.body.prefix(300), as: UTF8.self))",
                sourceLocation: sourceLocation)
            var answer: [String: Any] = [
                "method": method, "path": path, "status": response.status,
                "headers": Dictionary(response.headers.map { ($0.0.lowercased(), $0.1) }) { first, _ in first },
                "body": String(decoding: response.body, as: UTF8.self),
            ]
            if let schema { answer["schema"] = schema }
            answers.append(answer)
            return response
        }

        func json(_ object: Any) -> [UInt8] {
            (try? JSONSerialization.data(withJSONObject: object)).map { [UInt8]($0) } ?? []
        }
    }

    /// Runs the checker on `answers`; its output, or the error it exited with.
    static func check(_ answers: [[String: Any]]) throws -> String {
        let file = NSTemporaryDirectory() + "openapi-answers-" + ServiceDatabase.randomSuffix() + ".json"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try JSONSerialization.data(withJSONObject: answers, options: [.prettyPrinted]).write(
            to: URL(fileURLWithPath: file))
        return try Processes.runTool("/usr/bin/python3", [checker, document, file])
    }

    @Test(
        "The checker refuses answers the document does not allow: a missing key, an extra key, an undocumented status")
    func checkerRefusesViolations() throws {
        let path = Self.prefix + "webhooks"
        let json = ["content-type": "application/json", "cache-control": "no-store"]
        let good: [String: Any] = [
            "method": "POST", "path": path, "status": 200, "headers": json, "body": #"{"status":"ignored"}"#,
        ]
        #expect(try Self.check([good]).contains("1 answers checked, 0 problems"))
        for bad in [
            #"{}"#, #"{"status":"ignored","extra":1}"#, #"{"status":"maybe"}"#,
        ] {
            var answer = good
            answer["body"] = bad
            #expect(throws: (any Error).self, "\(bad)") { try Self.check([answer]) }
        }
        var undocumented = good
        undocumented["status"] = 418
        #expect(throws: (any Error).self) { try Self.check([undocumented]) }
        var plain = good
        plain["headers"] = ["content-type": "text/plain", "cache-control": "no-store"]
        #expect(throws: (any Error).self) { try Self.check([plain]) }
    }

    @Test("Every route's success and error answers, over HTTP through nginx, follow docs/openapi.yaml")
    func answersFollowTheDocument() throws {
        let data = NSTemporaryDirectory() + "casehug-openapi-" + ServiceDatabase.randomSuffix()
        let script = TestEnvironment.repositoryRoot.appendingPathComponent("scripts/run").path
        let environment = try TestEnvironment.scriptsRunEnvironment(
            dataDirectory: data, adding: ["SANDBOX_DEMO_SEED": "0"])
        defer {
            _ = try? Processes.runTool(script, ["--stop"], environment: environment)
            try? FileManager.default.removeItem(atPath: data)
        }
        try Processes.runTool(script, ["--detach"], environment: environment)
        let secrets = try ScriptsRunTests.readEnvFile(data + "/secrets.env")
        let demo = try ScriptsRunTests.readEnvFile(data + "/demo.env")
        let recorder = try Recorder(base: try #require(demo["BASE_URL"]))
        let admin = try #require(demo["DEMO_ADMIN_TOKEN"])
        let user = try #require(demo["DEMO_USER_TOKEN"])
        let jwtSecret = try #require(secrets["CASEHUG_JWT_SECRET"])
        let host = try Connection(url: try #require(demo["SUPERUSER_DATABASE_URL"]))
        let matter = "00000000-0000-4000-8000-0000000000d1"
        let json = "application/json"

        try Self.beforeConnecting(recorder, admin: admin, user: user, jwtSecret: jwtSecret, host: host, matter: matter)
        try Self.connect(recorder, admin: admin, demo: demo)
        try Self.sync(recorder, admin: admin, user: user, matter: matter)
        try Self.webhooks(recorder, demo: demo, secrets: secrets, host: host)

        // Disconnect last.
        try recorder.send("POST", "disconnect", token: user, expect: 403)
        try recorder.send("POST", "disconnect", expect: 401)
        try recorder.send("GET", "disconnect", token: admin, expect: 405, schema: "RouteError")
        let disconnected = try recorder.send("POST", "disconnect", token: admin, expect: 200)
        #expect(disconnected.jsonObject["webhooks_deleted"] as? Int == 1)
        try recorder.send("POST", "disconnect", token: admin, expect: 200)
        try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["matter_id": matter]), contentType: json, expect: 409)

        var output = ""
        do {
            output = try Self.check(recorder.answers)
        } catch {
            Issue.record("answers that do not follow docs/openapi.yaml: \(error)")
        }
        print(output.split(separator: "\n").last ?? "")
        #expect(output.contains("\(recorder.answers.count) answers checked, 0 problems"))
    }

    /// Status, settings, connect, callback and the refusals every route shares, while the demo
    /// firm is not connected.
    static func beforeConnecting(
        _ recorder: Recorder, admin: String, user: String, jwtSecret: String, host: Connection, matter: String
    ) throws {
        let json = "application/json"
        try recorder.send("GET", "status", token: admin, expect: 200)
        try recorder.send("GET", "status", token: user, expect: 200)
        let unmapped = try recorder.send("GET", "status", query: "?include=mappings", token: user, expect: 200)
        #expect(
            ((unmapped.jsonObject["mappings"] as? [String: Any])?["error"] as? [String: Any])?["code"] as? String
                == "not_connected")
        try recorder.send("GET", "status", query: "?include=everything", token: user, expect: 400)
        try recorder.send("GET", "status", query: "?include=mappings&refresh=maybe", token: user, expect: 400)
        try recorder.send("HEAD", "status", token: user, expect: 200)
        try recorder.send("GET", "status", expect: 401)
        try recorder.send("GET", "status", token: "not.a.jwt", expect: 401)
        let expired = TestEnvironment.token(subject: UUID().uuidString, expiresIn: -3600, secret: jwtSecret)
        try recorder.send("GET", "status", token: expired, expect: 401)
        try recorder.send(
            "GET", "status", token: TestEnvironment.token(subject: UUID().uuidString, secret: jwtSecret), expect: 401)
        // A user of no firm.
        let loner = UUID()
        try host.execute(
            "INSERT INTO users (id, firm_id, email, role) VALUES ($1, NULL, $2, 'standard')",
            [loner, "\(loner.uuidString.lowercased())@example.test"])
        let lonerToken = TestEnvironment.token(subject: loner.uuidString, secret: jwtSecret)
        try recorder.send("GET", "status", token: lonerToken, expect: 403)
        try recorder.send("GET", "sync", token: lonerToken, expect: 403)

        try recorder.send(
            "PUT", "status", token: admin, body: recorder.json(["auto_sync_on_matter_created": true]),
            contentType: json,
            expect: 200)
        try recorder.send(
            "PATCH", "status", token: admin,
            body: recorder.json(["location": "il", "documents_folder": "CaseHug Files"]), contentType: json,
            expect: 200)
        // Back to the firm's own state, whose matter types the sync below uses.
        try recorder.send(
            "PATCH", "status", token: admin, body: recorder.json(["location": NSNull()]), contentType: json, expect: 200
        )
        try recorder.send(
            "PATCH", "status", token: admin,
            body: recorder.json(["case_type_mappings": ["divorce_standard": NSNull()]]),
            contentType: json, expect: 200)
        try recorder.send(
            "PATCH", "status", token: user, body: recorder.json(["auto_sync_on_approval": false]), contentType: json,
            expect: 403)
        try recorder.send(
            "PATCH", "status", token: admin, body: recorder.json(["nope": 1]), contentType: json, expect: 400)
        try recorder.send(
            "PATCH", "status", token: admin,
            body: recorder.json(["case_type_mappings": ["divorce_standard": "Divorce"]]),
            contentType: json, expect: 409)
        try recorder.send("PUT", "status", token: admin, body: Array("{oops".utf8), contentType: json, expect: 400)
        try recorder.send(
            "PUT", "status", token: admin, body: Array("a=b".utf8), contentType: "text/plain", expect: 415)
        try recorder.send(
            "PUT", "status", token: admin, body: [UInt8](repeating: UInt8(ascii: " "), count: 2 << 20),
            contentType: json, expect: 413)
        try recorder.send("DELETE", "status", token: admin, expect: 405, schema: "RouteError")

        try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["matter_id": matter]), contentType: json, expect: 409)

        try recorder.send("GET", "connect", token: admin, headers: [("Accept", json)], expect: 200)
        try recorder.send("POST", "connect", token: admin, headers: [("Accept", json)], expect: 200)
        let redirect = try recorder.send("GET", "connect", token: admin, expect: 302)
        #expect(redirect.header("Location")?.contains("/oauth2/authorize?") == true)
        try recorder.send(
            "GET", "connect", query: "?region=uk", headers: [("Cookie", "casehug_session=" + admin)], expect: 302)
        try recorder.send("GET", "connect", query: "?region=XX", token: admin, expect: 400)
        try recorder.send("GET", "connect", token: user, expect: 403)
        try recorder.send("GET", "connect", expect: 401)
        try recorder.send("PUT", "connect", token: admin, expect: 405, schema: "RouteError")

        let lost = try recorder.send("GET", "callback", query: "?state=forged&code=x", expect: 302)
        #expect(lost.header("Location")?.hasSuffix("smokeball=error&reason=invalid_state") == true)
        try recorder.send("GET", "callback", query: "?error=access_denied", expect: 302)
        try recorder.send("POST", "callback", expect: 405, schema: "RouteError")
    }

    /// The sandbox's sign-in, as the demo admin's browser goes through it; the callback's answer
    /// is recorded.
    static func connect(_ recorder: Recorder, admin: String, demo: [String: String]) throws {
        let started = try recorder.send(
            "GET", "connect", token: admin, headers: [("Accept", "application/json")], expect: 200)
        let link = try #require(started.jsonObject["authorize_url"] as? String)
        let query = try #require(URLComponents(string: link)?.percentEncodedQuery)
        let sandboxURL = try #require(demo["SANDBOX_ADMIN_URL"]).replacingOccurrences(of: "/_sandbox", with: "")
        let form =
            QueryString.items(query) + [
                ("username", try #require(demo["SANDBOX_USER_EMAIL"])),
                ("password", try #require(demo["SANDBOX_USER_PASSWORD"])), ("decision", "allow"),
            ]
        let signedIn = try recorder.http.send(
            HTTPRequest(
                method: "POST", url: sandboxURL + "/oauth2/authorize",
                headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: Array(FormURLEncoding.encode(form).utf8)))
        #expect(signedIn.status == 302)
        let callback = try #require(signedIn.header("Location"))
        let callbackQuery = String(callback[try #require(callback.firstIndex(of: "?"))...])
        let landing = try recorder.send("GET", "callback", query: callbackQuery, expect: 302)
        #expect(landing.header("Location")?.contains("smokeball=connected") == true)
        let status = try recorder.send("GET", "status", token: admin, expect: 200)
        #expect(status.jsonObject["connected"] as? Bool == true)
        let mapped = try recorder.send("GET", "status", query: "?include=mappings&refresh=1", token: admin, expect: 200)
        let types = (mapped.jsonObject["mappings"] as? [String: Any])?["matter_types"] as? [Any]
        #expect(types?.isEmpty == false)
        let refused = try recorder.send(
            "PATCH", "status", token: admin,
            body: recorder.json(["case_type_mappings": ["divorce_standard": "No Such Matter Type"]]),
            contentType: "application/json", expect: 422)
        #expect(
            (refused.jsonObject["error"] as? [String: Any])?["field"] as? String
                == "case_type_mappings.divorce_standard")
        try recorder.send(
            "PATCH", "status", token: admin,
            body: recorder.json(["case_type_mappings": ["divorce_standard": "Divorce"]]),
            contentType: "application/json", expect: 200)
    }

    /// The sync route after connecting: a matter synced by the worker, its job and history.
    static func sync(_ recorder: Recorder, admin: String, user: String, matter: String) throws {
        let json = "application/json"
        let accepted = try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["matter_id": matter, "action": "sync_matter"]),
            contentType: json, expect: 202)
        let jobID = try #require(accepted.jsonObject["job_id"] as? String)
        try recorder.send("GET", "sync", query: "?job_id=" + jobID, token: user, expect: 200)
        try Processes.waitFor("the sync job", timeout: 90) {
            let job = try recorder.http.send(
                HTTPRequest(
                    url: recorder.base + Self.prefix + "sync?job_id=" + jobID,
                    headers: [("Authorization", "Bearer " + user)]))
            return ["succeeded", "dead"].contains(job.jsonObject["status"] as? String ?? "")
        }
        let done = try recorder.send("GET", "sync", query: "?job_id=" + jobID, token: user, expect: 200)
        #expect(done.jsonObject["status"] as? String == "succeeded")
        try recorder.send("HEAD", "sync", query: "?job_id=" + jobID, token: user, expect: 200)
        try recorder.send("GET", "sync", token: user, expect: 200)
        let page = try recorder.send("GET", "sync", query: "?matter_id=\(matter)&limit=1", token: user, expect: 200)
        let cursor = try #require(page.jsonObject["next_cursor"] as? String)
        try recorder.send(
            "GET", "sync", query: "?matter_id=\(matter)&limit=100&cursor=" + cursor, token: user, expect: 200)
        try recorder.send(
            "POST", "sync", token: admin, body: recorder.json(["action": "sync_matters", "matter_ids": [matter]]),
            contentType: json, expect: 202)
        try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["action": "pull_matters"]), contentType: json, expect: 202
        )

        try recorder.send(
            "POST", "sync", token: admin, body: recorder.json(["action": "ensure_webhooks"]), contentType: json,
            expect: 202)
        try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["action": "ensure_webhooks"]), contentType: json,
            expect: 403)
        try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["action": "retry", "job_id": jobID]), contentType: json,
            expect: 409)
        try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["action": "retry", "job_id": UUID().uuidString]),
            contentType: json, expect: 404)
        try recorder.send("GET", "sync", query: "?job_id=nope", token: user, expect: 400)
        try recorder.send("GET", "sync", query: "?job_id=\(UUID().uuidString)", token: user, expect: 404)
        try recorder.send("GET", "sync", query: "?job_id=\(jobID)&limit=5", token: user, expect: 400)
        try recorder.send("GET", "sync", query: "?limit=0", token: user, expect: 400)
        try recorder.send("GET", "sync", query: "?cursor=tampered", token: user, expect: 400)
        try recorder.send("GET", "sync", query: "?matter_id=\(UUID().uuidString)", token: user, expect: 404)
        try recorder.send("GET", "sync", expect: 401)
        try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["action": "sync_all"]), contentType: json, expect: 403)
        try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["action": "bogus"]), contentType: json, expect: 400)
        try recorder.send(
            "POST", "sync", token: user, body: recorder.json(["matter_id": UUID().uuidString]), contentType: json,
            expect: 404)
        try recorder.send("POST", "sync", token: user, body: Array("a=b".utf8), contentType: "text/plain", expect: 415)
        try recorder.send(
            "POST", "sync", body: recorder.json(["action": "pull_matters"]), contentType: json, expect: 401)
        try recorder.send("PUT", "sync", token: user, expect: 405, schema: "RouteError")
    }

    /// Webhook deliveries: an unknown account, a signed one and its duplicate, refusals.
    static func webhooks(_ recorder: Recorder, demo: [String: String], secrets: [String: String], host: Connection)
        throws
    {
        let row = try host.execute(
            """
            SELECT firm_id, smokeball_account_id, webhook_secret FROM firm_integrations
            WHERE platform = 'smokeball' AND is_active
            """
        ).single()
        let firm = try row.uuid("firm_id")
        let account = try row.string("smokeball_account_id")
        let keyText = try #require(secrets["TOKEN_ENCRYPTION_KEY"])
        let keyBytes = try #require(Data(base64Encoded: keyText))
        let key = try TokenVault(key: [UInt8](keyBytes)).open(
            try row.bytes("webhook_secret"), firmID: firm, platform: "smokeball", column: .webhookSecret)
        let clientID = try #require(demo["SMOKEBALL_CLIENT_ID"])
        func envelope(_ account: String) -> [UInt8] {
            recorder.json([
                "accountId": account, "subscriptionId": "contract-test", "type": "matter.updated", "source": "API",
                "payload": ["id": UUID().uuidString.lowercased()], "timestamp": DotNetTicks.from(Date()),
            ])
        }
        func signed(_ requestID: String, key: String) -> [(String, String)] {
            let timestamp = String(DotNetTicks.from(Date()))
            let signature = Hex.encode(
                HMACSHA256.authenticate(Array("\(timestamp)|\(requestID)|\(clientID)".utf8), key: Array(key.utf8)))
            return [("Timestamp", timestamp), ("RequestId", requestID), ("Signature", signature)]
        }
        let json = "application/json"
        let ignored = try recorder.send(
            "POST", "webhooks", body: envelope(UUID().uuidString), contentType: json, expect: 200)
        #expect(ignored.jsonObject["status"] as? String == "ignored")
        let body = envelope(account)
        let headers = signed(UUID().uuidString.lowercased(), key: key)
        let accepted = try recorder.send(
            "POST", "webhooks", headers: headers, body: body, contentType: json, expect: 200)
        #expect(accepted.jsonObject["status"] as? String == "accepted")
        let duplicate = try recorder.send(
            "POST", "webhooks", headers: headers, body: body, contentType: json, expect: 200)
        #expect(duplicate.jsonObject["status"] as? String == "duplicate")
        try recorder.send(
            "POST", "webhooks", headers: signed("r1", key: "not-the-key"), body: envelope(account), contentType: json,
            expect: 401)
        try recorder.send("POST", "webhooks", body: envelope(account), contentType: json, expect: 401)
        try recorder.send("POST", "webhooks", body: Array("{}".utf8), contentType: json, expect: 400)
        try recorder.send("POST", "webhooks", body: Array("[1]".utf8), contentType: json, expect: 400)
        try recorder.send("POST", "webhooks", body: Array("x".utf8), contentType: "text/plain", expect: 415)
        try recorder.send(
            "POST", "webhooks", body: [UInt8](repeating: UInt8(ascii: " "), count: 300 << 10), contentType: json,
            expect: 413)
        try recorder.send("GET", "webhooks", expect: 405, schema: "RouteError")
    }
}
