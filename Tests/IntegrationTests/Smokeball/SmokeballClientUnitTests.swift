import Foundation
import HTTPClient
import Testing

@testable import Smokeball

/// The parts of the Smokeball client that need no server: configuration, PKCE, error mapping,
/// 202 links, Retry-After.
struct SmokeballClientUnitTests {
    static let full = [
        "SMOKEBALL_CLIENT_ID": "client-1", "SMOKEBALL_CLIENT_SECRET": "secret-value-1",
        "SMOKEBALL_API_KEY": "api-key-value-1",
    ]

    @Test("the PKCE S256 challenge matches RFC 7636 Appendix B")
    func pkceMatchesTheRFCVector() {
        #expect(
            PKCE.challenge(for: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
                == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        let verifier = PKCE.verifier()
        #expect(verifier.count == 43)
        #expect(verifier != PKCE.verifier())
    }

    @Test("each region has Smokeball's published production and staging hosts")
    func publishedHosts() {
        #expect(SmokeballEndpoints.published(.us).authorizeURL == "https://auth.smokeball.com/oauth2/authorize")
        #expect(SmokeballEndpoints.published(.au).tokenURL == "https://auth.smokeball.com.au/oauth2/token")
        #expect(SmokeballEndpoints.published(.uk).apiBaseURL == "https://api.smokeball.co.uk")
        #expect(
            SmokeballEndpoints.published(.au, staging: true)
                == SmokeballEndpoints(
                    authBaseURL: "https://datastaging-auth.smokeball.com.au",
                    apiBaseURL: "https://stagingapi.smokeball.com.au"))
        #expect(
            SmokeballEndpoints.published(.uk, staging: true).authBaseURL == "https://datastaging-auth.smokeball.co.uk")
    }

    @Test("the environment gives credentials, region, overrides and the rate; defaults are 5/5 and US")
    func configurationFromTheEnvironment() throws {
        let defaults = try SmokeballConfiguration.fromEnvironment(Self.full)
        #expect(defaults.credentials?.clientID == "client-1")
        #expect(defaults.ratePerSecond == 5 && defaults.burst == 5)
        #expect(defaults.endpoints() == SmokeballEndpoints.published(.us))
        #expect(defaults.endpoints(for: .uk) == SmokeballEndpoints.published(.uk))

        var environment = Self.full
        environment["SMOKEBALL_REGION"] = "au"
        environment["SMOKEBALL_AUTH_BASE_URL"] = "http://127.0.0.1:9/"
        environment["SMOKEBALL_API_BASE_URL"] = "http://127.0.0.1:9"
        environment["SMOKEBALL_RATE_PER_SECOND"] = "12.5"
        environment["SMOKEBALL_BURST"] = "20"
        let configured = try SmokeballConfiguration.fromEnvironment(environment)
        #expect(configured.defaultRegion == .au)
        // One code path: the overrides replace every region's hosts.
        for region in SmokeballRegion.allCases {
            #expect(configured.endpoints(for: region).tokenURL == "http://127.0.0.1:9/oauth2/token")
            #expect(configured.endpoints(for: region).apiBaseURL == "http://127.0.0.1:9")
        }
        #expect(configured.ratePerSecond == 12.5 && configured.burst == 20)
    }

    @Test("no credentials at all is a server that is not configured, and its client says so")
    func absentCredentials() throws {
        let configuration = try SmokeballConfiguration.fromEnvironment([:])
        #expect(!configuration.isConfigured)
        #expect(throws: SmokeballError.self) { try SmokeballClient(configuration: configuration, rateLimit: nil) }
        do {
            _ = try SmokeballClient(configuration: configuration, rateLimit: nil)
        } catch let error as SmokeballError {
            #expect(error.code == .notConfigured && error.httpStatus == 503)
        }
    }

    @Test(
        "a bad setting names the variable and never its value",
        arguments: [
            ("SMOKEBALL_REGION", "mars-region"), ("SMOKEBALL_RATE_PER_SECOND", "fast-value"),
            ("SMOKEBALL_BURST", "-7"), ("SMOKEBALL_API_BASE_URL", "ftp://secret-host-value"),
            ("SMOKEBALL_STAGING", "maybe-value"),
        ])
    func badSettings(variable: String, value: String) {
        var environment = Self.full
        environment[variable] = value
        #expect(throws: SmokeballConfigurationError.self) { try SmokeballConfiguration.fromEnvironment(environment) }
        do {
            _ = try SmokeballConfiguration.fromEnvironment(environment)
        } catch {
            #expect(error.variable == variable)
            #expect(!error.description.contains(value))
        }
    }

    @Test("half a set of credentials names the missing variable and no secret")
    func partialCredentials() {
        var environment = Self.full
        environment["SMOKEBALL_API_KEY"] = nil
        do {
            _ = try SmokeballConfiguration.fromEnvironment(environment)
            Issue.record("accepted")
        } catch {
            #expect(error.variable == "SMOKEBALL_API_KEY")
            #expect(!error.description.contains("secret-value-1"))
        }
    }

    @Test("printing credentials, tokens and subscription bodies shows no secret")
    func redaction() throws {
        let configuration = try SmokeballConfiguration.fromEnvironment(Self.full)
        let credentials = try #require(configuration.credentials)
        #expect(!"\(credentials)".contains("secret-value-1") && !"\(credentials)".contains("api-key-value-1"))
        let tokens = TokenResponse(
            accessToken: "access-token-value", refreshToken: "refresh-token-value", tokenType: "Bearer",
            expiresIn: 3600)
        for text in ["\(tokens)", String(reflecting: tokens)] {
            #expect(!text.contains("access-token-value") && !text.contains("refresh-token-value"))
        }
        let access = SmokeballAccess.user("access-token-value")
        #expect(!"\(access)".contains("access-token-value"))
        let subscription = WebhookSubscriptionRequest(
            name: "n", eventTypes: ["matter.created"], eventNotificationUrl: "https://x", key: "webhook-key-value")
        #expect(!"\(subscription)".contains("webhook-key-value"))
    }

    @Test("a ProblemDetails answer becomes a typed error whose description reveals none of its text")
    func problemDetailsBecomeTypedErrors() throws {
        let body = #"""
            {"type":"https://httpstatuses.io/400","title":"Bad Request","status":400,
             "detail":"Contact 123-secret-detail is not valid","instance":"urn:x",
             "errors":[{"message":"email is not an address","property":"email","extra":1}]}
            """#
        let response = HTTPResponse(
            status: 400, headers: [("Content-Type", "application/problem+json")], body: Array(body.utf8))
        let error = SmokeballError.from(response, requestID: "req-1")
        #expect(error.code == .rejected && error.upstreamStatus == 400 && error.httpStatus == 502)
        #expect(error.problem?.detail == "Contact 123-secret-detail is not valid")
        #expect(
            error.problem?.errors == [
                ProblemDetails.Entry(code: nil, message: "email is not an address", property: "email")
            ])
        #expect(error.requestID == "req-1")
        #expect(!error.description.contains("secret-detail"))
        let expectations: [(Int, SmokeballError.Code)] = [
            (401, .unauthorized), (403, .unauthorized), (404, .notFound), (409, .rejected), (429, .rateLimited),
            (500, .unavailable), (503, .unavailable),
        ]
        for (status, code) in expectations {
            #expect(
                SmokeballError.from(HTTPResponse(status: status, headers: [], body: []), requestID: nil).code == code)
        }
    }

    @Test("a 202's id comes from its Link body, else from Location")
    func acceptedLinks() {
        let body =
            #"{"id":"4a0c1c38-0000-4000-8000-000000000001","href":"http://h/matters/4a0c1c38-0000-4000-8000-000000000001","relation":"self","method":"GET"}"#
        let linked = SmokeballClient.acceptedLink(HTTPResponse(status: 202, headers: [], body: Array(body.utf8)))
        #expect(linked.id == "4a0c1c38-0000-4000-8000-000000000001")
        let located = SmokeballClient.acceptedLink(
            HTTPResponse(status: 202, headers: [("Location", "https://api.smokeball.com/matters/abc-123")], body: []))
        #expect(located == Accepted(id: "abc-123", href: "https://api.smokeball.com/matters/abc-123"))
        let hrefOnly = SmokeballClient.acceptedLink(
            HTTPResponse(
                status: 202, headers: [], body: Array(#"{"href":"http://h/matters/m-9/documents/folders/f-7"}"#.utf8)))
        #expect(hrefOnly.id == "f-7")
    }

    @Test("Retry-After is read as seconds or as an HTTP date")
    func retryAfter() {
        func response(_ value: String?) -> HTTPResponse {
            HTTPResponse(status: 429, headers: value.map { [("Retry-After", $0)] } ?? [], body: [])
        }
        #expect(RetryPolicy.retryAfter(response("3")) == 3)
        #expect(RetryPolicy.retryAfter(response(nil)) == nil)
        #expect(RetryPolicy.retryAfter(response("soon")) == nil)
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(RetryPolicy.retryAfter(response("Tue, 14 Nov 2023 22:13:30 GMT"), now: now) == 10)
    }

    @Test("back-off doubles per attempt, is jittered within its half, and is capped")
    func backoff() {
        let policy = RetryPolicy(maxAttempts: 6, baseDelay: 1, maxDelay: 4)
        for _ in 0..<50 {
            #expect((0.5...1).contains(policy.backoff(afterAttempt: 1)))
            #expect((1...2).contains(policy.backoff(afterAttempt: 2)))
            #expect((2...4).contains(policy.backoff(afterAttempt: 3)))
            #expect((2...4).contains(policy.backoff(afterAttempt: 9)))
        }
        let samples = Set((0..<20).map { _ in policy.backoff(afterAttempt: 3) })
        #expect(samples.count > 1)
    }

    @Test("the signed-in user is read from a Cognito access token's claims; an opaque token has none")
    func accessTokenClaims() {
        func jwt(_ claims: String) -> String {
            let payload = Data(claims.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            return "eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln"
        }
        #expect(AccessTokenClaims.userID(jwt(#"{"sub":"s-1","username":"u-1"}"#)) == "u-1")
        #expect(AccessTokenClaims.userID(jwt(#"{"sub":"s-1"}"#)) == "s-1")
        #expect(AccessTokenClaims.userID("opaque-token") == nil)
    }
}
