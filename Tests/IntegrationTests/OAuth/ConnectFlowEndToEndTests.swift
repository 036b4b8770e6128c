import Basics
import Cryptography
import Foundation
import HTTPClient
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

/// The whole connection as a browser lives it, through nginx and the real route processes:
/// connect → Smokeball's sign-in page → callback → status → disconnect. Then the secrets of the
/// flow (tokens, code, state, webhook key) are looked for, in clear, in a `pg_dump` of the
/// database and in every log file the service and nginx wrote.
@Suite(.serialized) struct ConnectFlowEndToEndTests {
    static let key = SecureRandom.bytes(32)
    static let routes = ["status", "connect", "callback", "disconnect"]

    static func environment(_ base: String, _ sandbox: String?) -> [String: String] {
        [
            "SITE_URL": base, "TOKEN_ENCRYPTION_KEY": Data(key).base64EncodedString(),
            "SMOKEBALL_CLIENT_ID": SmokeballSandbox.clientID, "SMOKEBALL_CLIENT_SECRET": SmokeballSandbox.clientSecret,
            "SMOKEBALL_API_KEY": SmokeballSandbox.apiKey, "SMOKEBALL_AUTH_BASE_URL": sandbox ?? "",
            "SMOKEBALL_API_BASE_URL": sandbox ?? "",
        ]
    }

    /// A GET with the session cookie, as the browser sends it; no redirect is followed.
    static func browserGet(_ url: String, cookie: String?) throws -> HTTPResponse {
        try HTTPClient().send(
            HTTPRequest(
                url: url, headers: cookie.map { [("Cookie", "casehug_session=" + $0)] } ?? [], timeout: 30))
    }

    @Test("connect, sign in, callback, status and disconnect work end to end and leave no secret in a dump or a log")
    func wholeFlow() throws {
        try SmokeballSandbox.with(routes: Self.routes, routeEnvironment: Self.environment) { sandbox in
            let service = sandbox.service
            let seed = try Seed(sandbox.database)
            let firm = try seed.firmWithUsers("End To End Law")
            let session = TestEnvironment.token(subject: firm.admin.uuidString)

            // The settings page's link: connect with the session cookie → Smokeball's authorize page.
            let connect = try Self.browserGet(
                service.baseURL + "/api/v1/integrations/smokeball/connect", cookie: session)
            #expect(connect.status == 302)
            let authorizeURL = try #require(connect.header("Location"))
            #expect(authorizeURL.hasPrefix(sandbox.url + "/oauth2/authorize?"))
            let sentState = try #require(ConnectionFlow.parameters(authorizeURL)["state"])

            // Signing in on the sandbox's page sends the browser to our callback with a code.
            let back = try sandbox.signIn(authorizeURL: authorizeURL, redirectTo: service.baseURL)
            let code = try #require(back["code"])
            #expect(back["state"] == sentState)
            let callbackURL =
                service.baseURL + "/api/v1/integrations/smokeball/callback?"
                + FormURLEncoding.encode([("code", code), ("state", sentState)])
            let landing = try Self.browserGet(callbackURL, cookie: session)
            #expect(landing.status == 302)
            #expect(landing.header("Location") == service.baseURL + "/settings/integrations?smokeball=connected")

            // Status shows the Smokeball firm, who connected, and the subscription.
            let status = try service.send("GET", "/api/v1/integrations/smokeball/status", token: session)
            #expect(status.status == 200)
            let answer = status.jsonObject
            #expect(answer["connected"] as? Bool == true)
            let account = try #require(answer["smokeball"] as? [String: Any])
            #expect(account["firm_name"] as? String == "Client Tests Law")
            #expect(account["account_id"] as? String == sandbox.accountID)
            let subscription = try #require(answer["webhook_subscription"] as? [String: Any])
            #expect(
                (subscription["event_types"] as? [String]).map(Set.init) == Set(WebhookSubscriptions.eventTypes))

            // The secrets of this flow, in clear.
            let vault = try TokenVault(key: Self.key)
            let row = try seed.connection.execute(
                "SELECT access_token, refresh_token, webhook_secret FROM firm_integrations WHERE firm_id = $1",
                [firm.id]
            ).single()
            func open(_ column: TokenVault.Column) throws -> String {
                try vault.open(try row.bytes(column.rawValue), firmID: firm.id, platform: "smokeball", column: column)
            }
            let secrets = [
                "access token": try open(.accessToken), "refresh token": try open(.refreshToken),
                "webhook key": try open(.webhookSecret), "code": code, "state": sentState,
            ]
            #expect(secrets.values.allSatisfy { $0.count >= 32 })
            let dump = try Self.dump(sandbox.database)
            #expect(dump.contains("firm_integrations"))
            for (name, value) in secrets {
                #expect(!dump.contains(value), "the \(name) is in the pg_dump")
            }

            // Disconnect: the sandbox keeps no subscription for the partner; a second one is a no-op.
            let disconnect = try service.send("POST", "/api/v1/integrations/smokeball/disconnect", token: session)
            #expect(disconnect.status == 200)
            #expect(disconnect.jsonObject["connected"] as? Bool == false)
            #expect(disconnect.jsonObject["webhooks_deleted"] as? Int == 1)
            #expect((disconnect.jsonObject["webhook_errors"] as? [Any])?.isEmpty == true)
            #expect(try Self.subscriptionCount(sandbox) == 0)
            let again = try service.send("POST", "/api/v1/integrations/smokeball/disconnect", token: session)
            #expect(again.status == 200 && again.jsonObject["webhooks_deleted"] as? Int == 0)
            let after = try service.send("GET", "/api/v1/integrations/smokeball/status", token: session)
            #expect(after.jsonObject["connected"] as? Bool == false)

            // Every log file: the routes', the sandbox's, nginx's access and error logs.
            let logs = try Self.logFiles(service.directory)
            #expect(logs.count >= Self.routes.count + 2)
            let callbackLog = service.logLines("callback").joined(separator: "\n")
            #expect(callbackLog.contains("smokeball_connected"))
            for (path, text) in logs {
                for (name, value) in secrets {
                    #expect(!text.contains(value), "the \(name) is in \(path)")
                }
                // Even URL-encoded (a logged query string would carry it so).
                #expect(!text.contains(PercentEncoding.encode(sentState)), "the state is in \(path)")
            }
        }
    }

    @Test("a firm admin connects in Chromium: the settings link, Smokeball's sign-in, back on connected")
    func inTheBrowser() throws {
        try SmokeballSandbox.with(routes: Self.routes, routeEnvironment: Self.environment) { sandbox in
            let service = sandbox.service
            let seed = try Seed(sandbox.database)
            let firm = try seed.firmWithUsers("Browser Law")
            let work = NSTemporaryDirectory() + "casehug-browser-" + ServiceDatabase.randomSuffix()
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            let script = TestEnvironment.repositoryRoot.appendingPathComponent(
                "Tests/IntegrationTests/Fixtures/browser-connect.py"
            ).path
            let returnURL = service.baseURL + "/settings/integrations"
            let output: String
            do {
                output = try Processes.runTool(
                    "/usr/bin/python3",
                    [
                        script, service.baseURL, service.baseURL + "/api/v1/integrations/smokeball/connect", returnURL,
                        work,
                    ],
                    environment: [
                        "PATH": "/usr/bin:/bin", "HOME": work, "PYTHONDONTWRITEBYTECODE": "1",
                        "SESSION_TOKEN": TestEnvironment.token(subject: firm.admin.uuidString),
                        "SIGNIN_EMAIL": SmokeballSandbox.email, "SIGNIN_PASSWORD": SmokeballSandbox.password,
                    ])
            } catch {
                // The screenshot and page source stay in `work` (the message names them).
                Issue.record("the browser did not land back on the return URL: \(error)")
                return
            }
            try? FileManager.default.removeItem(atPath: work)
            let landed = output.split(separator: "\n").first { $0.hasPrefix("LANDED ") }.map { String($0.dropFirst(7)) }
            #expect(landed == returnURL + "?smokeball=connected")
            let status = try service.send(
                "GET", "/api/v1/integrations/smokeball/status",
                token: TestEnvironment.token(subject: firm.admin.uuidString))
            #expect(status.jsonObject["connected"] as? Bool == true)
            #expect(
                (status.jsonObject["connected_by"] as? [String: Any])?["user_id"] as? String
                    == firm.admin.uuidString.lowercased())
        }
    }

    static func subscriptionCount(_ sandbox: SmokeballSandbox) throws -> Int64 {
        try Connection(url: sandbox.store.url).execute(
            "SELECT count(*)::bigint AS n FROM sb_webhook_subscriptions WHERE client_id = $1",
            [SmokeballSandbox.clientID]
        ).single().int("n")
    }

    /// `pg_dump` of the service's database as the cluster's superuser; the password travels in
    /// the environment, not on the command line.
    static func dump(_ database: ServiceDatabase) throws -> String {
        let url = try #require(URLComponents(string: database.adminURL))
        var arguments = ["--no-owner", "--dbname", String(url.path.dropFirst())]
        if let host = url.host, !host.isEmpty { arguments += ["--host", host] }
        if let port = url.port { arguments += ["--port", String(port)] }
        if let user = url.user { arguments += ["--username", user] }
        for item in url.queryItems ?? [] where item.name == "host" {
            arguments += ["--host", item.value ?? ""]
        }
        var environment = ProcessInfo.processInfo.environment
        if let password = url.password { environment["PGPASSWORD"] = password.removingPercentEncoding ?? password }
        return try Processes.runTool(TestEnvironment.pgDump, arguments, environment: environment)
    }

    static func logFiles(_ directory: URL) throws -> [(String, String)] {
        let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)
        var files: [(String, String)] = []
        while let url = enumerator?.nextObject() as? URL {
            guard url.pathExtension == "log", let text = try? String(contentsOf: url, encoding: .utf8) else {
                continue
            }
            files.append((url.lastPathComponent, text))
        }
        return files
    }
}
