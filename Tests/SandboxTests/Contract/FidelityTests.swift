import FastCGI
import Foundation
import Testing

@testable import SmokeballSandbox

/// The sandbox's answers checked against Smokeball's published OpenAPI schemas, so the
/// integration is tested against the real contract, not against the sandbox's idea of it.
@Suite struct FidelityTests {
    typealias F = SandboxFixture

    @Test(arguments: [
        [:], ["Location": "CA", "Limit": "5"], ["Location": "NY", "Offset": "10", "Limit": "10"],
        ["Category": "Personal Injury", "Name": "accident"], ["Type": "1"], ["Name": "no such type"],
    ])
    func matterTypePagesMatchTheSpec(query: [String: String]) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let response = fixture.api("GET", "/mattertypes", token: access, query: query)
        #expect(response.status == .ok)
        let body = try JSONSerialization.jsonObject(with: Data(response.body))
        #expect(OpenAPIValidator.smokeball.problems(body, path: "/mattertypes", method: "get", status: 200) == [])
    }

    @Test func refusalsAreProblemDetails() throws {
        let fixture = try F(rate: 1, burst: 1)
        let (access, _) = fixture.connect()
        let refusals = [
            fixture.api("GET", "/mattertypes", token: access, query: ["Limit": "501"]),
            fixture.api("GET", "/mattertypes", token: access, apiKey: nil),
            fixture.api("GET", "/mattertypes", token: "expired-or-forged"),
            fixture.api("GET", "/no-such-thing", token: access),
        ]
        #expect(refusals.map(\.status.code) == [400, 403, 429, 429])
        // 429s come from Smokeball's gateway, not as ProblemDetails (RateLimitTests).
        for limited in refusals[2...] { RateLimitTests.expectGateway429(limited, retryAfter: false) }
        let unauthorized = try F(rate: 100, burst: 100).api("GET", "/mattertypes", token: "forged")
        let notFound = try F(rate: 100, burst: 100)
        let notFoundAnswer = notFound.api("GET", "/no-such-thing", token: notFound.connect().access)
        #expect(unauthorized.status == .unauthorized)
        #expect(notFoundAnswer.status == .notFound)
        for response in refusals[..<2] + [unauthorized, notFoundAnswer] {
            let body = try JSONSerialization.jsonObject(with: Data(response.body))
            #expect(OpenAPIValidator.smokeball.problems(body, schema: "ProblemDetails") == [])
            #expect((body as? [String: Any])?["status"] as? Int == response.status.code)
        }
        // The 400 is also what the spec lists for GET /mattertypes.
        let badRequest = try JSONSerialization.jsonObject(with: Data(refusals[0].body))
        #expect(OpenAPIValidator.smokeball.problems(badRequest, path: "/mattertypes", method: "get", status: 400) == [])
    }
}
