import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import Smokeball
import Testing

@testable import Integration

/// The connect route's handler against a real database, called without sockets.
@Suite struct ConnectHandlerTests {
    static let key = SecureRandom.bytes(32)
    static let redirects = OAuthRedirects(
        redirectURI: "https://casehug.test/api/v1/integrations/smokeball/callback",
        returnURL: "https://casehug.test/settings/integrations",
        webhookURL: "https://casehug.test/api/v1/integrations/smokeball/webhooks")

    struct Fixture {
        let database: ServiceDatabase
        let seed: Seed
        let firm: UUID
        let admin: UUID
        let standard: UUID
        let handler: ConnectHandler

        init(_ database: ServiceDatabase, configured: Bool = true) throws {
            self.database = database
            seed = try Seed(database)
            let users = try seed.firmWithUsers("Firm A")
            (firm, admin, standard) = (users.id, users.admin, users.standard)
            let credentials = SmokeballConfiguration.Credentials(
                clientID: "casehug-client", clientSecret: "secret-not-used-here", apiKey: "key-not-used-here")
            handler = ConnectHandler(
                authenticator: Authenticator(secret: Array(TestEnvironment.jwtSecret.utf8)),
                database: Database(url: database.appURL),
                smokeball: SmokeballConfiguration(
                    credentials: configured ? credentials : nil, authBaseURLOverride: "https://auth.sandbox.test",
                    apiBaseURLOverride: "https://api.sandbox.test"),
                vault: try TokenVault(key: ConnectHandlerTests.key), redirects: ConnectHandlerTests.redirects)
        }

        func call(
            _ method: String = "GET", user: UUID?, cookie: Bool = false, query: String = "", accept: String? = nil
        ) -> Response {
            var headers: [String: String] = [:]
            if let user {
                let token = TestEnvironment.token(subject: user.uuidString)
                if cookie {
                    headers["cookie"] = "casehug_session=\(token)"
                } else {
                    headers["authorization"] = "Bearer " + token
                }
            }
            if let accept { headers["accept"] = accept }
            let request = Request(
                method: method, path: "/api/v1/integrations/smokeball/connect", query: QueryString.dictionary(query),
                queryString: query, headers: headers, body: [], requestID: "test")
            return respond(to: request, with: handler, log: Logger(route: "connect")).0
        }

        /// The stored states: hash, sealed verifier and region.
        func states() throws -> [(hash: [UInt8], verifier: [UInt8], region: String)] {
            try seed.connection.execute(
                "SELECT state_hash, code_verifier, region FROM oauth_states WHERE firm_id = $1 ORDER BY created_at",
                [firm]
            ).rows.map { (try $0.bytes("state_hash"), try $0.bytes("code_verifier"), try $0.string("region")) }
        }
    }

    static func errorCode(_ response: Response) -> String? {
        let body = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        return (body?["error"] as? [String: Any])?["code"] as? String
    }

    @Test func aFirmAdminIsSentToSmokeballsAuthorizePageWithAStoredSingleUseState() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let response = fixture.call(user: fixture.admin)
            #expect(response.status.code == 302)
            let location = try #require(response.header("Location"))
            let components = try #require(URLComponents(string: location))
            #expect(location.hasPrefix("https://auth.sandbox.test/oauth2/authorize?"))
            let query = Dictionary(
                uniqueKeysWithValues: (components.queryItems ?? []).map { ($0.name, $0.value ?? "") })
            #expect(
                Set(query.keys) == [
                    "response_type", "client_id", "redirect_uri", "state", "code_challenge_method", "code_challenge",
                ])
            #expect(query["response_type"] == "code")
            #expect(query["client_id"] == "casehug-client")
            #expect(query["redirect_uri"] == Self.redirects.redirectURI)
            #expect(query["code_challenge_method"] == "S256")
            #expect(query["scope"] == nil)
            // Only the state's hash is stored; the verifier is sealed to the firm and matches the challenge.
            let state = try #require(Base64URL.decode(query["state"] ?? ""))
            #expect(state.count == 32)
            let stored = try #require(try fixture.states().first)
            #expect(stored.hash == SHA256.hash(state))
            #expect(stored.region == "US")
            let verifier = try TokenVault(key: Self.key).open(
                stored.verifier, firmID: fixture.firm, platform: "smokeball", column: .codeVerifier)
            #expect(PKCE.challenge(for: verifier) == query["code_challenge"])
            #expect(!stored.verifier.contains(subsequence: Array(verifier.utf8)))
            #expect(response.header("Cache-Control") == "no-store")
        }
    }

    @Test func jsonCallersGetTheURLAndItsExpiryAndTheCookieWorksLikeTheHeader() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let response = fixture.call(
                "POST", user: fixture.admin, cookie: true, query: "region=au", accept: "application/json")
            #expect(response.status.code == 200)
            let body = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
            #expect(
                (body["authorize_url"] as? String)?.hasPrefix("https://auth.sandbox.test/oauth2/authorize?") == true)
            let expires = try #require(body["expires_at"] as? String)
            let date = try #require(
                try? Date(expires, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)))
            #expect(abs(date.timeIntervalSinceNow - 600) < 60)
            #expect(try fixture.states().map(\.region) == ["AU"])
        }
    }

    @Test func theDefaultRegionsHostIsUsedWithoutOverrides() throws {
        let endpoints = SmokeballConfiguration(credentials: nil, defaultRegion: .uk).endpoints(for: .au)
        #expect(
            endpoints.authorizeURL(clientID: "c", redirectURI: "https://x.test/cb", state: "s", codeChallenge: "h")
                .hasPrefix("https://auth.smokeball.com.au/oauth2/authorize?response_type=code&client_id=c&"))
    }

    @Test func onlyAFirmAdminMayConnectAndNothingIsStoredOtherwise() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let standard = fixture.call(user: fixture.standard)
            #expect(standard.status.code == 403)
            #expect(Self.errorCode(standard) == "forbidden")
            let noFirm = try fixture.seed.user(firm: nil, role: "firm_admin")
            let homeless = fixture.call(user: noFirm)
            #expect(homeless.status.code == 403)
            #expect(Self.errorCode(homeless) == "no_firm")
            #expect(fixture.call(user: nil).status.code == 401)
            #expect(fixture.call("PUT", user: fixture.admin).status.code == 405)
            let region = fixture.call(user: fixture.admin, query: "region=NZ")
            #expect(region.status.code == 400)
            #expect(Self.errorCode(region) == "invalid_region")
            #expect(try fixture.states().isEmpty)
        }
    }

    @Test func aServerWithoutSmokeballCredentialsAnswersNotConfigured() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database, configured: false)
            let response = fixture.call(user: fixture.admin)
            #expect(response.status.code == 503)
            #expect(Self.errorCode(response) == "not_configured")
            let body = String(decoding: response.body, as: UTF8.self)
            #expect(body.contains("Smokeball integration is not configured"))
            #expect(try fixture.states().isEmpty)
        }
    }

    @Test(arguments: [
        (
            ["SITE_URL": "https://casehug.test/"], "https://casehug.test/api/v1/integrations/smokeball/callback",
            "https://casehug.test/settings/integrations"
        ),
        (
            [
                "SITE_URL": "https://casehug.test", "SMOKEBALL_REDIRECT_URI": "https://cb.test/x",
                "SMOKEBALL_RETURN_URL": "https://r.test/y",
            ],
            "https://cb.test/x", "https://r.test/y"
        ),
    ])
    func redirectsComeFromTheSeedsVariables(environment: [String: String], redirect: String, back: String) throws {
        let redirects = try OAuthRedirects.fromEnvironment(environment)
        #expect(redirects.redirectURI == redirect)
        #expect(redirects.returnURL == back)
    }

    @Test(arguments: [
        [:], ["SITE_URL": "casehug.test"], ["SITE_URL": "ftp://casehug.test"],
        ["SITE_URL": "https://x.test", "SMOKEBALL_REDIRECT_URI": "https://x.test/cb#frag"],
    ])
    func badRedirectSettingsNameTheVariable(environment: [String: String]) {
        #expect(throws: ConfigurationError.self) { try OAuthRedirects.fromEnvironment(environment) }
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence: [UInt8]) -> Bool {
        guard !subsequence.isEmpty, subsequence.count <= count else { return false }
        return (0...(count - subsequence.count)).contains { Array(self[$0..<($0 + subsequence.count)]) == subsequence }
    }
}
