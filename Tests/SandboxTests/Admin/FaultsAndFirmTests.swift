import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// Injected faults (so the integration's retry paths meet real 5xx and 429 answers) and the
/// small read-only resources, `GET /firm` and `GET /staff`.
@Suite struct FaultsTests {
    typealias F = SandboxFixture

    @Test(arguments: [429, 500, 502, 503, 504])
    func aFaultReplacesTheAnswerWithItsStatus(status: Int) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let added = fixture.admin("POST", "/_sandbox/faults", ["path_prefix": "/mattertypes", "status": status])
        #expect(added.status == .created)
        let failed = fixture.api("GET", "/mattertypes", token: access, requestID: "f-1")
        #expect(failed.status.code == status)
        if status == 429 {
            RateLimitTests.expectGateway429(failed, retryAfter: false)
        } else {
            #expect(F.json(failed)["status"] as? Int == status)
        }
        #expect(failed.header("RequestId") == "f-1")
        // Other paths are untouched, and clearing the faults restores the path.
        #expect(fixture.api("GET", "/firm", token: access).status == .ok)
        #expect(fixture.admin("DELETE", "/_sandbox/faults").status == .noContent)
        #expect(fixture.api("GET", "/mattertypes", token: access).status == .ok)
    }

    /// An injected 429 is the gateway's, and the partner's `retry_after_header` knob decides
    /// whether it carries Retry-After, as for the rate limit's own.
    @Test(arguments: [false, true])
    func anInjected429FollowsThePartnersRetryAfterKnob(retryAfterHeader: Bool) throws {
        let fixture = try F(rate: 1000, burst: 1000, retryAfterHeader: retryAfterHeader)
        let (access, _) = fixture.connect()
        _ = fixture.admin("POST", "/_sandbox/faults", ["path_prefix": "/firm", "status": 429])
        RateLimitTests.expectGateway429(fixture.api("GET", "/firm", token: access), retryAfter: retryAfterHeader)
        _ = fixture.admin("POST", "/_sandbox/faults", ["path_prefix": "/oauth2/token", "status": 429])
        let token = fixture.token([("grant_type", "client_credentials")])
        #expect(token.status == .tooManyRequests)
        #expect(F.json(token)["error"] as? String == "temporarily_unavailable")
        #expect((token.header("Retry-After") != nil) == retryAfterHeader)
    }

    @Test func aShareFailsAboutThatFractionAndCountersAddUp() throws {
        let fixture = try F(rate: 10_000, burst: 10_000)
        let (access, _) = fixture.connect()
        _ = fixture.admin("POST", "/_sandbox/faults", ["path_prefix": "/firm", "status": 500, "share": 0.5])
        let statuses = (0..<200).map { _ in fixture.api("GET", "/firm", token: access).status.code }
        let failures = statuses.filter { $0 == 500 }.count
        // Binomial(200, 0.5): outside 60...140 has probability below 1e-8.
        #expect((60...140).contains(failures))
        #expect(statuses.allSatisfy { $0 == 200 || $0 == 500 })
        // The path filter leaves out the token exchange of `connect()`.
        let counters = F.json(fixture.call("GET", "/_sandbox/counters", query: ["path": "/firm"]))
        let byStatus = counters["by_status"] as? [String: Int] ?? [:]
        #expect(byStatus["500"] == failures)
        #expect(byStatus["200"] == 200 - failures)
        #expect((counters["by_path"] as? [String: Int])?["GET /firm"] == 200)
    }

    @Test func faultsCanTargetOnePartnerAndAddLatency() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        _ = fixture.admin(
            "POST", "/_sandbox/faults", ["path_prefix": "/", "status": 503, "client_id": "someone-else"])
        #expect(fixture.api("GET", "/firm", token: access).status == .ok)
        _ = fixture.admin("DELETE", "/_sandbox/faults")
        _ = fixture.admin("POST", "/_sandbox/faults", ["path_prefix": "/firm", "latency_ms": 150])
        let started = Date()
        #expect(fixture.api("GET", "/firm", token: access).status == .ok)
        // A lower bound only: the fault sleeps at least this long.
        #expect(Date().timeIntervalSince(started) >= 0.15)
    }

    @Test(
        arguments: [
            ["status": 500],
            ["path_prefix": "mattertypes", "status": 500],
            ["path_prefix": "/x", "status": 404],
            ["path_prefix": "/x", "share": 1.5, "status": 500],
            ["path_prefix": "/x"],
        ] as [[String: any Sendable]])
    func badFaultsAreRefused(body: [String: any Sendable]) throws {
        let fixture = try F()
        #expect(fixture.admin("POST", "/_sandbox/faults", body).status == .badRequest)
    }
}

@Suite struct FirmAndStaffTests {
    typealias F = SandboxFixture

    @Test func theFirmAndItsStaffMatchTheSpec() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let firm = fixture.api("GET", "/firm", token: access)
        #expect(firm.status == .ok)
        let firmBody = try JSONSerialization.jsonObject(with: Data(firm.body))
        #expect(OpenAPIValidator.smokeball.problems(firmBody, path: "/firm", method: "get", status: 200) == [])
        #expect((firmBody as? [String: Any])?["id"] as? String == fixture.accountID.uuidString.lowercased())
        #expect((firmBody as? [String: Any])?["name"] as? String == "Sandbox Firm")
        // A US account without a state is in IL; its state is where its matter types come from.
        #expect(((firmBody as? [String: Any])?["streetAddress"] as? [String: Any])?["state"] as? String == "IL")
        let moved = fixture.admin(
            "POST", "/_sandbox/accounts",
            ["id": fixture.accountID.uuidString, "name": "Sandbox Firm", "region": "US", "state": "NY", "users": []])
        #expect(moved.status.code == 201)
        let again = try JSONSerialization.jsonObject(with: Data(fixture.api("GET", "/firm", token: access).body))
        #expect(((again as? [String: Any])?["streetAddress"] as? [String: Any])?["state"] as? String == "NY")
        #expect(OpenAPIValidator.smokeball.problems(again, path: "/firm", method: "get", status: 200) == [])
        let badState = fixture.admin(
            "POST", "/_sandbox/accounts", ["name": "Elsewhere", "region": "US", "state": "New York", "users": []])
        #expect(badState.status.code == 400)

        let staff = fixture.api("GET", "/staff", token: access)
        let staffBody = try JSONSerialization.jsonObject(with: Data(staff.body))
        #expect(OpenAPIValidator.smokeball.problems(staffBody, path: "/staff", method: "get", status: 200) == [])
        let members = (staffBody as? [String: Any])?["value"] as? [[String: Any]] ?? []
        #expect(members.map { $0["email"] as? String } == [F.email])
        let id = try #require(members.first?["id"] as? String)
        let one = fixture.api("GET", "/staff/" + id, token: access)
        let oneBody = try JSONSerialization.jsonObject(with: Data(one.body))
        #expect(OpenAPIValidator.smokeball.problems(oneBody, path: "/staff/{id}", method: "get", status: 200) == [])
        #expect(fixture.api("GET", "/staff/" + UUID().uuidString, token: access).status == .notFound)
        #expect(fixture.api("GET", "/staff/not-a-uuid", token: access).status == .badRequest)
    }
}

/// Faults off the API: the auth server and the upload URL fail as injected, and a failed call
/// changes nothing, so the retry the integration makes succeeds exactly once.
@Suite struct OffAPIFaultsTests {
    typealias F = SandboxFixture
    typealias D = DocumentsTests

    static let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

    @Test func aTokenEndpointFaultLeavesTheCodeUnredeemed() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (_, query) = fixture.authorize(challenge: Secrets.s256Challenge(verifier: Self.verifier))
        let code = try #require(query["code"])
        let exchange = [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", F.redirectURI),
            ("code_verifier", Self.verifier),
        ]
        let added = fixture.admin("POST", "/_sandbox/faults", ["path_prefix": "/oauth2/token", "status": 503])
        #expect(added.status == .created)
        let failed = fixture.token(exchange)
        #expect(failed.status.code == 503)
        #expect(F.json(failed)["error"] as? String == "temporarily_unavailable")
        #expect(try Self.unredeemedCodes(fixture) == 1)

        #expect(fixture.admin("DELETE", "/_sandbox/faults").status == .noContent)
        let retried = fixture.token(exchange)
        #expect(retried.status == .ok)
        #expect(F.json(retried)["access_token"] is String)
        #expect(try Self.unredeemedCodes(fixture) == 0)
    }

    static func unredeemedCodes(_ fixture: F) throws -> Int64 {
        try Connection(url: fixture.databaseURL).execute(
            "SELECT count(*) AS n FROM sb_auth_codes WHERE used_at IS NULL"
        ).single().int("n")
    }

    @Test func tokenFaultsCanTargetOnePartner() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (_, refresh) = fixture.connect()
        let renew = [("grant_type", "refresh_token"), ("refresh_token", refresh)]
        _ = fixture.admin(
            "POST", "/_sandbox/faults", ["path_prefix": "/oauth2/token", "status": 500, "client_id": "someone-else"])
        #expect(fixture.token(renew).status == .ok)
        _ = fixture.admin(
            "POST", "/_sandbox/faults", ["path_prefix": "/oauth2/", "status": 500, "client_id": F.clientID])
        let failed = fixture.token(renew)
        #expect(failed.status.code == 500)
        #expect(F.json(failed)["error"] as? String == "server_error")
        #expect(fixture.authorize().0.status.code == 500)
    }

    @Test func anAuthorizeFaultAnswersAnErrorPageAndIssuesNoCode() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        _ = fixture.admin("POST", "/_sandbox/faults", ["path_prefix": "/oauth2/authorize", "status": 502])
        let (failed, query) = fixture.authorize()
        #expect(failed.status.code == 502)
        #expect(failed.header("Content-Type")?.hasPrefix("text/html") == true)
        #expect(query["code"] == nil)
        #expect(try Self.unredeemedCodes(fixture) == 0)
        _ = fixture.admin("DELETE", "/_sandbox/faults")
        #expect(fixture.authorize().1["code"] != nil)
    }

    @Test func anUploadFaultStoresNothingAndARetryStoresOnce() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try D.matter(fixture)
        let info = F.json(D.post(fixture, "/matters/\(matter)/documents/files", access, ["fileName": "a.pdf"]))
        let upload = D.uploadURL(info)
        _ = fixture.admin("POST", "/_sandbox/faults", ["path_prefix": "/_uploads/", "status": 500])
        let failed = fixture.call("PUT", url: upload, body: [1, 2, 3])
        #expect(failed.status.code == 500)
        #expect(OpenAPIValidator.smokeball.problems(F.json(failed), schema: "ProblemDetails") == [])
        let stored = "SELECT count(*) AS n FROM sb_files WHERE content IS NOT NULL"
        #expect(try Connection(url: fixture.databaseURL).execute(stored).single().int("n") == 0)
        #expect(try D.events(fixture, type: "files.updated").isEmpty)

        _ = fixture.admin("DELETE", "/_sandbox/faults")
        #expect(fixture.call("PUT", url: upload, body: [1, 2, 3]).status == .ok)
        #expect(fixture.call("PUT", url: upload, body: [1, 2, 3]).status == .forbidden)
        #expect(try Connection(url: fixture.databaseURL).execute(stored).single().int("n") == 1)
        #expect(try D.events(fixture, type: "files.updated").count == 1)
    }
}
