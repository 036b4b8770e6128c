import Foundation
import HTTPClient
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `status` through real nginx and the real route executable, over HTTP with the project's
/// libcurl client, against a real migrated database.
@Suite(.serialized) struct StatusEndToEndTests {
    static let path = "/api/v1/integrations/smokeball/status"

    struct Stack {
        let database: ServiceDatabase
        let service: RunningService
        let seed: Seed
        let firm: UUID
        let adminToken: String
        let userToken: String

        init() throws {
            database = try ServiceDatabase.create()
            seed = try Seed(database)
            firm = try seed.firm("End to End LLP")
            adminToken = TestEnvironment.token(subject: try seed.user(firm: firm, role: "firm_admin").uuidString)
            userToken = TestEnvironment.token(subject: try seed.user(firm: firm, role: "standard").uuidString)
            service = try RunningService(routes: ["status"], databaseURL: database.appURL)
        }

        func tearDown() {
            service.stop()
            database.drop()
        }
    }

    static func withStack(_ body: (Stack) throws -> Void) throws {
        let stack = try Stack()
        defer { stack.tearDown() }
        try body(stack)
    }

    @Test func demoFlowGetThenPutThenGet() throws {
        try Self.withStack { stack in
            let first = try stack.service.send(
                "GET", Self.path, token: stack.userToken, headers: [("X-Request-Id", "e2e-1")])
            #expect(first.status == 200)
            #expect(first.header("Content-Type") == "application/json")
            #expect(first.header("X-Request-Id") == "e2e-1")
            #expect(first.jsonObject["connected"] as? Bool == false)

            // A mapping is checked against the firm's Smokeball matter types, which this firm
            // (never connected) cannot give: refused, nothing saved.
            let mapping = try stack.service.send(
                "PUT", Self.path, token: stack.adminToken,
                body: Array(
                    #"{"auto_sync_on_matter_created": true, "case_type_mappings": {"divorce_standard": "Divorce"}}"#
                        .utf8),
                contentType: "application/json")
            #expect([409, 503].contains(mapping.status))
            let put = try stack.service.send(
                "PUT", Self.path, token: stack.adminToken,
                body: Array(#"{"auto_sync_on_matter_created": true, "case_type_mappings": {}}"#.utf8),
                contentType: "application/json")
            #expect(put.status == 200)
            let settings = put.jsonObject["settings"] as? [String: Any]
            #expect(settings?["auto_sync_on_matter_created"] as? Bool == true)

            let forbidden = try stack.service.send(
                "PATCH", Self.path, token: stack.userToken, body: Array(#"{"auto_sync_on_approval": false}"#.utf8),
                contentType: "application/json")
            #expect(forbidden.status == 403)

            let after = try stack.service.send("GET", Self.path, token: stack.userToken)
            let stored = after.jsonObject["settings"] as? [String: Any]
            #expect(stored?["case_type_mappings"] as? [String: String] == [:])
            #expect(stored?["auto_sync_on_approval"] as? Bool == true)

            // One JSON log line per request, with no token or query string in it. A worker writes
            // its line after the answer has gone out, so give the last one a moment to land.
            var lines: [String] = []
            try? Processes.waitFor("four request log lines", timeout: 5) {
                lines = stack.service.logLines("status").filter { $0.contains(#""event":"request""#) }
                return lines.count >= 4
            }
            #expect(lines.count >= 4)
            #expect(!lines.joined().contains(stack.adminToken))
        }
    }

    @Test func badTokensAreRejectedWith401() throws {
        try Self.withStack { stack in
            let user = UUID().uuidString
            let now = Int64(Date().timeIntervalSince1970)
            let header = #"{"alg":"none","typ":"JWT"}"#
            let payload = #"{"sub":"\#(user)","exp":\#(now + 600)}"#
            let algNone =
                Data(header.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "") + "."
                + Data(payload.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "") + "."
            let cases: [(String?, String)] = [
                (nil, "missing_token"),
                (TestEnvironment.token(subject: user, expiresIn: -3600), "token_expired"),
                (
                    TestEnvironment.token(subject: user, secret: "a-different-secret-that-is-long-enough-000"),
                    "invalid_token"
                ),
                (algNone, "invalid_token"),
                ("not.a.jwt", "invalid_token"),
            ]
            for (token, code) in cases {
                let response = try stack.service.send("GET", Self.path, token: token)
                #expect(response.status == 401)
                #expect(response.errorCode == code)
                #expect(response.header("WWW-Authenticate") != nil)
            }
        }
    }

    @Test func oversizeBodiesStopAtNginxAndMalformedOnesAt400() throws {
        try Self.withStack { stack in
            let big = [UInt8](repeating: UInt8(ascii: "a"), count: 2 * 1024 * 1024)
            let tooLarge = try stack.service.send(
                "PUT", Self.path, token: stack.adminToken, body: big, contentType: "application/json")
            #expect(tooLarge.status == 413)
            #expect(tooLarge.errorCode == "payload_too_large")
            let malformed = try stack.service.send(
                "PUT", Self.path, token: stack.adminToken, body: Array("{oops".utf8), contentType: "application/json")
            #expect(malformed.status == 400)
            #expect(malformed.errorCode == "invalid_json")
            let notJSON = try stack.service.send(
                "PUT", Self.path, token: stack.adminToken, body: Array("a=b".utf8), contentType: "text/plain")
            #expect(notJSON.status == 415)
            #expect(try stack.seed.settingsJSON(firm: stack.firm) == nil)
            // The oversize request never reached the route: once the later 415 is logged, there
            // is still no line for a 413.
            try Processes.waitFor("the 415 log line", timeout: 5) {
                stack.service.logLines("status").contains { $0.contains(#""status":415"#) }
            }
            let lines = stack.service.logLines("status").filter { $0.contains(#""status":413"#) }
            #expect(lines.isEmpty)
        }
    }

    @Test func unknownPathsAnswer404JSON() throws {
        try Self.withStack { stack in
            for path in ["/api/v1/integrations/smokeball/nope", "/", "/api/v1/integrations/smokeball/status/extra"] {
                let response = try stack.service.send("GET", path)
                #expect(response.status == 404)
                #expect(response.errorCode == "not_found")
            }
        }
    }

    @Test func databaseOutageGives503AndTheServiceRecovers() throws {
        try Self.withStack { stack in
            #expect(try stack.service.send("GET", Self.path, token: stack.adminToken).status == 200)
            try stack.database.takeOffline()
            for _ in 0..<4 {
                let response = try stack.service.send("GET", Self.path, token: stack.adminToken)
                #expect(response.status == 503)
                #expect(response.header("Retry-After") == "5")
                #expect(response.errorCode == "database_unavailable")
            }
            #expect(stack.service.routes["status"]?.isRunning == true)
            try stack.database.bringOnline()
            let recovered = try stack.service.send("GET", Self.path, token: stack.adminToken)
            #expect(recovered.status == 200)
        }
    }

    @Test func aKilledWorkerIsReplacedAndRequestsKeepWorking() throws {
        try Self.withStack { stack in
            let before = stack.service.workerPIDs("status")
            #expect(before.count == 2)
            let victim = try #require(before.first)
            kill(victim, SIGKILL)
            try Processes.waitFor("a replacement worker") {
                let now = stack.service.workerPIDs("status")
                return now.count == 2 && !now.contains(victim)
            }
            for _ in 0..<10 {
                #expect(try stack.service.send("GET", Self.path, token: stack.adminToken).status == 200)
            }
        }
    }

    @Test func sigtermLetsTheRouteExitCleanly() throws {
        try Self.withStack { stack in
            #expect(try stack.service.send("GET", Self.path, token: stack.adminToken).status == 200)
            let process = try #require(stack.service.routes["status"])
            process.terminate()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            let socket = stack.service.socketsDirectory.appendingPathComponent("status.sock").path
            #expect(!FileManager.default.fileExists(atPath: socket))
            // nginx now answers with its own JSON 502, not a hang.
            let response = try stack.service.send("GET", Self.path, token: stack.adminToken)
            #expect(response.status == 502)
            #expect(response.errorCode == "bad_gateway")
        }
    }
}
