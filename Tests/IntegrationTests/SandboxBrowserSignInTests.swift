import Basics
import Cryptography
import Foundation
import HTTPClient
import TestSupport
import Testing

/// The sandbox's sign-in page in a real browser (headless Chromium driven by Selenium): the
/// page's Content-Security-Policy must let the form's POST redirect to the client's callback
/// on another origin, which Chrome checks against form-action.
@Suite struct SandboxBrowserSignInTests {
    static let clientID = "browser-client"
    static let clientSecret = "browser-client-secret-value"
    static let email = "browser@firm.test"
    static let password = "browser-password-value"

    @Test func aPersonSignsInInChromiumAndLandsOnTheCallbackWithARedeemableCode() throws {
        try SandboxEndToEndTests.withRunningSandbox { service, _, _ in
            // The callback: another loopback port, so another origin than the sandbox's.
            let redirectURI = "http://127.0.0.1:\(try Processes.freePort())/callback"
            let client = try service.send(
                "POST", "/_sandbox/clients",
                body: SandboxEndToEndTests.json([
                    "client_id": Self.clientID, "client_secret": Self.clientSecret, "api_key": "browser-api-key",
                    "redirect_uris": [redirectURI],
                ]), contentType: "application/json", base: service.sandboxURL)
            #expect(client.status == 201)
            let account = try service.send(
                "POST", "/_sandbox/accounts",
                body: SandboxEndToEndTests.json([
                    "name": "Browser Firm", "users": [["email": Self.email, "password": Self.password]],
                ]), contentType: "application/json", base: service.sandboxURL)
            #expect(account.status == 201)

            let verifier = SecureRandom.token(byteCount: 48)
            let state = "browser-" + ServiceDatabase.randomSuffix()
            let authorizeURL = URLQuery.build(
                base: service.sandboxURL + "/oauth2/authorize",
                [
                    ("response_type", "code"), ("client_id", Self.clientID), ("redirect_uri", redirectURI),
                    ("state", state), ("code_challenge", Base64URL.encode(SHA256.hash(Array(verifier.utf8)))),
                    ("code_challenge_method", "S256"),
                ])
            // The sign-in page names the callback's origin as a form target; other pages only 'self'.
            let signIn = try service.send("GET", "", base: authorizeURL)
            let origin = String(redirectURI.dropLast("/callback".count))
            #expect(signIn.header("Content-Security-Policy") == "default-src 'none'; form-action 'self' \(origin)")
            let unknownClient = try service.send(
                "GET", "/oauth2/authorize?response_type=code&client_id=nobody&redirect_uri=http%3A%2F%2Fevil.test%2Fcb",
                base: service.sandboxURL)
            #expect(unknownClient.status == 400)
            #expect(unknownClient.header("Content-Security-Policy") == "default-src 'none'; form-action 'self'")

            let work = NSTemporaryDirectory() + "casehug-browser-" + ServiceDatabase.randomSuffix()
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            let script = TestEnvironment.repositoryRoot.appendingPathComponent(
                "Tests/IntegrationTests/Fixtures/browser-sign-in.py"
            ).path
            let output: String
            do {
                output = try Processes.runTool(
                    "/usr/bin/python3", [script, authorizeURL, redirectURI, work],
                    environment: [
                        "PATH": "/usr/bin:/bin", "HOME": work, "PYTHONDONTWRITEBYTECODE": "1",
                        "SIGNIN_EMAIL": Self.email,
                        "SIGNIN_PASSWORD": Self.password,
                    ])
            } catch {
                // The screenshot and page source stay in `work` (the message names them).
                Issue.record("the browser did not land on the callback: \(error)")
                return
            }
            try? FileManager.default.removeItem(atPath: work)

            let lines = output.split(separator: "\n").map(String.init)
            let landed = try #require(lines.first { $0.hasPrefix("LANDED ") }.map { String($0.dropFirst(7)) })
            #expect(landed.hasPrefix(redirectURI + "?"))
            // The callback itself got the browser's request, once.
            #expect(lines.filter { $0.hasPrefix("RECEIVED /callback?") }.count == 1)
            let items = Dictionary(
                (URLComponents(string: landed)?.queryItems ?? []).map { ($0.name, $0.value ?? "") }
            ) { first, _ in first }
            #expect(items["state"] == state)
            let code = try #require(items["code"])

            // The code is good for one token exchange.
            let basic = "Basic " + Data("\(Self.clientID):\(Self.clientSecret)".utf8).base64EncodedString()
            let exchange = SandboxEndToEndTests.form([
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI),
                ("code_verifier", verifier),
            ])
            let tokens = try service.send(
                "POST", "/oauth2/token", headers: [("Authorization", basic)], body: exchange,
                contentType: "application/x-www-form-urlencoded", base: service.sandboxURL)
            #expect(tokens.status == 200)
            #expect((tokens.jsonObject["access_token"] as? String)?.isEmpty == false)
            let again = try service.send(
                "POST", "/oauth2/token", headers: [("Authorization", basic)], body: exchange,
                contentType: "application/x-www-form-urlencoded", base: service.sandboxURL)
            #expect(again.status == 400)
            #expect(again.jsonObject["error"] as? String == "invalid_grant")
        }
    }
}
