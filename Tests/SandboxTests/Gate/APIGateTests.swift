import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import SmokeballSandbox

/// What every API request goes through: the API key, the Bearer token, the partner's rate
/// limit, the RequestId echo and the request log.
@Suite struct APIGateTests {
    typealias F = SandboxFixture

    static func problem(_ response: Response) -> [String: Any] {
        #expect(response.header("Content-Type") == "application/problem+json")
        let body = F.json(response)
        #expect(body["status"] as? Int == response.status.code)
        #expect((body["title"] as? String)?.isEmpty == false)
        return body
    }

    @Test func keysAndTokensAreCheckedAndEveryRequestIsLogged() throws {
        let fixture = try F()
        let (access, _) = fixture.connect()
        let noKey = fixture.api("GET", "/mattertypes", token: access, apiKey: nil, requestID: "r-1")
        #expect(noKey.status == .forbidden)
        _ = Self.problem(noKey)
        #expect(noKey.header("RequestId") == "r-1")
        #expect(
            fixture.api("GET", "/mattertypes", token: access, apiKey: "wrong", requestID: "r-2").status == .forbidden)
        let noToken = fixture.api("GET", "/mattertypes", token: nil, requestID: "r-3")
        #expect(noToken.status == .unauthorized)
        #expect(noToken.header("WWW-Authenticate") == "Bearer")
        #expect(fixture.api("GET", "/mattertypes", token: "forged", requestID: "r-4").status == .unauthorized)
        let fine = fixture.api("GET", "/mattertypes", token: access, requestID: "r-5")
        #expect(fine.status == .ok)
        #expect(fine.header("RequestId") == "r-5")
        #expect(fixture.api("GET", "/nothing-here", token: access, requestID: "r-6").status == .notFound)
        #expect(fixture.api("POST", "/mattertypes", token: access, requestID: "r-7").status == .methodNotAllowed)

        // The token exchange of `connect()` came first, logged without a RequestId.
        let all = F.json(fixture.admin("GET", "/_sandbox/requests"))["requests"] as? [[String: Any]] ?? []
        #expect(all.first?["path"] as? String == "/oauth2/token" && all.first?["request_id"] is NSNull)
        let log = all.dropFirst()
        #expect(log.map { $0["request_id"] as? String } == ["r-1", "r-2", "r-3", "r-4", "r-5", "r-6", "r-7"])
        #expect(log.map { $0["status"] as? Int } == [403, 403, 401, 401, 200, 404, 405])
        // Requests without a valid key belong to no partner.
        #expect(log.map { $0["client_id"] is NSNull } == [true, true, false, false, false, false, false])
    }

    @Test func aTokenIssuedToAnotherPartnerIsRefused() throws {
        let fixture = try F()
        let other = fixture.admin(
            "POST", "/_sandbox/clients",
            [
                "client_id": "other-partner", "client_secret": "other-secret-value", "api_key": "other-api-key",
                "redirect_uris": ["http://other.test/cb"],
            ])
        #expect(other.status.code == 201)
        let token =
            F.json(
                fixture.token(
                    [("grant_type", "client_credentials")],
                    authorization: F.basic("other-partner", "other-secret-value")))["access_token"] as? String
        let refused = fixture.api("GET", "/\(fixture.accountID.uuidString)/mattertypes", token: token)
        #expect(refused.status == .forbidden)
        #expect((Self.problem(refused)["detail"] as? String)?.contains("another client") == true)
    }

    @Test func clientCredentialsReachOnlyAccountsThatGrantedAccess() throws {
        let fixture = try F()
        let serverToken = try #require(
            F.json(fixture.token([("grant_type", "client_credentials")]))["access_token"] as? String)
        let account = fixture.accountID.uuidString.lowercased()
        // Before the firm connects, its account is off limits.
        #expect(fixture.api("GET", "/\(account)/mattertypes", token: serverToken).status == .forbidden)
        _ = fixture.connect()
        #expect(fixture.api("GET", "/\(account)/mattertypes", token: serverToken).status == .ok)
        #expect(fixture.api("GET", "/\(UUID().uuidString)/mattertypes", token: serverToken).status == .forbidden)
        #expect(fixture.api("GET", "/mattertypes", token: serverToken).status == .notFound)
        _ = fixture.admin("POST", "/_sandbox/revoke", ["account_id": account])
        #expect(fixture.api("GET", "/\(account)/mattertypes", token: serverToken).status == .forbidden)
    }

    @Test func adminEndpointsAnswerLoopbackOnlyAndValidateTheirInput() throws {
        let fixture = try F()
        let request = Request(
            method: "POST", path: "/_sandbox/reset", headers: [:], body: [], remoteAddress: "10.0.0.7", requestID: "x")
        let remote = respond(to: request, with: fixture.handler, log: Logger(route: "t")).0
        #expect(remote.status == .forbidden)
        let bad = fixture.admin("POST", "/_sandbox/clients", ["client_id": "x", "client_secret": "y", "api_key": "z"])
        #expect(bad.status == .badRequest)
        #expect((Self.problem(bad)["detail"] as? String)?.contains("redirect_uris") == true)
        #expect(fixture.admin("POST", "/_sandbox/accounts", ["name": "X", "region": "FR"]).status == .badRequest)
        #expect(fixture.admin("POST", "/_sandbox/reset").status == .noContent)
        // After a reset the partner is gone: its key no longer opens the API.
        #expect(fixture.api("GET", "/mattertypes", token: "t").status == .forbidden)
    }
}

/// The partner's token bucket, shared by every process through one row per client.
@Suite struct RateLimitTests {
    typealias F = SandboxFixture

    @Test func theBurstIsAdmittedThenRequestsWaitTheirTurn() throws {
        let fixture = try F(rate: 1, burst: 3)
        let (access, _) = fixture.connect()
        let statuses = (0..<4).map { _ in fixture.api("GET", "/mattertypes", token: access).status.code }
        #expect(statuses == [200, 200, 200, 429])
        let limited = fixture.api("GET", "/mattertypes", token: access, requestID: "limited")
        Self.expectGateway429(limited, retryAfter: false)
        #expect(limited.header("RequestId") == "limited")
    }

    /// Smokeball's gateway: `{"message":"Too Many Requests"}` as JSON, no ProblemDetails, and
    /// no rate headers unless the partner has the `retry_after_header` knob.
    static func expectGateway429(_ response: Response, retryAfter: Bool) {
        #expect(response.status == .tooManyRequests)
        #expect(response.header("Content-Type") == "application/json")
        #expect(F.text(response) == #"{"message":"Too Many Requests"}"#)
        #expect((response.header("Retry-After") != nil) == retryAfter)
        if retryAfter { #expect(Int(response.header("Retry-After") ?? "") ?? 0 >= 1) }
        #expect(!response.headers.contains { $0.0.lowercased().hasPrefix("x-ratelimit") })
    }

    @Test func withTheRetryAfterKnobA429CarriesRetryAfter() throws {
        let fixture = try F(rate: 1, burst: 1, retryAfterHeader: true)
        let (access, _) = fixture.connect()
        _ = fixture.api("GET", "/mattertypes", token: access)
        Self.expectGateway429(fixture.api("GET", "/mattertypes", token: access), retryAfter: true)
        // Switched off again (re-registering the partner): Smokeball's plain 429.
        let registered = fixture.admin(
            "POST", "/_sandbox/clients",
            [
                "client_id": F.clientID, "client_secret": F.clientSecret, "api_key": F.apiKey,
                "redirect_uris": [F.redirectURI], "rate_per_second": 1, "burst": 1, "retry_after_header": false,
            ])
        #expect(registered.status == .created)
        _ = fixture.api("GET", "/mattertypes", token: access)
        Self.expectGateway429(fixture.api("GET", "/mattertypes", token: access), retryAfter: false)
        let refused = fixture.admin(
            "POST", "/_sandbox/clients",
            [
                "client_id": F.clientID, "client_secret": F.clientSecret, "api_key": F.apiKey,
                "redirect_uris": [F.redirectURI], "retry_after_header": "yes",
            ])
        #expect(refused.status == .badRequest)
    }

    /// Several workers with their own connections flood the API: over T seconds at most
    /// rate × T + burst requests get through, and the limiter does not starve them either.
    @Test func aFloodFromSeveralWorkersNeverExceedsRateTimesTimePlusBurst() throws {
        let rate = 20.0
        let burst = 5.0
        let fixture = try F(rate: rate, burst: burst)
        let (access, _) = fixture.connect()
        let workers = 4
        let duration: TimeInterval = 2
        struct Tally {
            var admitted = 0
            var refused = 0
            var withRateHeaders = 0
        }
        let counts = Locked(Tally())
        let started = Date()
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            let handler = SandboxHandler(database: Database(url: fixture.databaseURL, options: .direct))
            while Date().timeIntervalSince(started) < duration {
                let request = Request(
                    method: "GET", path: "/mattertypes", query: ["Limit": "1"],
                    headers: ["x-api-key": F.apiKey, "authorization": "Bearer " + access, "host": "h"],
                    remoteAddress: "127.0.0.1", requestID: "flood")
                let status = respond(to: request, with: handler, log: Logger(route: "t")).0
                let rateHeaders = status.headers.contains {
                    $0.0.lowercased() == "retry-after" || $0.0.lowercased().hasPrefix("x-ratelimit")
                }
                counts.withLock { tally in
                    if status.status == .ok { tally.admitted += 1 }
                    if status.status == .tooManyRequests {
                        tally.refused += 1
                        if rateHeaders { tally.withRateHeaders += 1 }
                    }
                }
            }
        }
        let elapsed = Date().timeIntervalSince(started)
        let tally = counts.value
        // The figure, for the record (not a timing assertion).
        print(
            "flood (in-process, \(workers) workers): admitted \(tally.admitted), refused \(tally.refused) in "
                + "\(String(format: "%.2f", elapsed)) s; bound rate × T + burst = "
                + "\(String(format: "%.1f", rate * elapsed + burst))")
        #expect(Double(tally.admitted) <= rate * elapsed + burst)
        #expect(Double(tally.admitted) >= rate * duration * 0.5)
        #expect(tally.refused > tally.admitted)
        #expect(tally.withRateHeaders == 0)
    }
}
