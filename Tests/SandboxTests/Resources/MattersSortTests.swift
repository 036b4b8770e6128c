import FastCGI
import Foundation
import Testing

@testable import SmokeballSandbox

/// GET /matters `Sort` over the spec's sortable fields, status and lastUpdated.
@Suite struct MattersSortTests {
    typealias F = SandboxFixture
    typealias M = MattersTests

    /// Four matters created a second apart: numbers S-1 … S-4 with these statuses.
    static func matters(_ fixture: F, _ access: String) throws {
        let client = try M.contact(fixture, "Sorted Client")
        let type = try M.matterType(fixture, "Divorce")
        for (index, status) in ["Pending", "Open", "Closed", "Open"].enumerated() {
            _ = try M.create(
                fixture, access, M.body(type: type, clients: [client], ["number": "S-\(index + 1)", "status": status]))
            fixture.advance(by: 1)
        }
    }

    static func numbers(_ fixture: F, _ access: String, _ query: String) -> [String] {
        let response = M.list(fixture, access, query)
        #expect(response.status == .ok, "\(query): \(F.text(response))")
        return M.items(response).compactMap { $0["number"] as? String }
    }

    @Test(arguments: [
        ("", ["S-1", "S-2", "S-3", "S-4"]),
        ("Sort=lastUpdated", ["S-1", "S-2", "S-3", "S-4"]),
        ("Sort=-lastUpdated", ["S-4", "S-3", "S-2", "S-1"]),
        ("Sort=lastUpdated%20desc", ["S-4", "S-3", "S-2", "S-1"]),
        // Status names in order (Closed, Open, Pending), then last updated.
        ("Sort=status,lastUpdated", ["S-3", "S-2", "S-4", "S-1"]),
        ("Sort=STATUS%20desc,lastUpdated%20desc", ["S-1", "S-4", "S-2", "S-3"]),
    ])
    func sortOrdersTheList(query: String, expected: [String]) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        try Self.matters(fixture, access)
        #expect(Self.numbers(fixture, access, query) == expected)
        let body = try JSONSerialization.jsonObject(with: Data(M.list(fixture, access, query).body))
        #expect(M.spec.problems(body, path: "/matters", method: "get", status: 200) == [])
    }

    @Test func pagesOfASortedListWalkEveryMatterOnce() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        try Self.matters(fixture, access)
        let walked = (0..<4).flatMap { Self.numbers(fixture, access, "Sort=status&Limit=1&Offset=\($0)") }
        // Equal statuses are ordered by id: any order, but the same on every page.
        #expect(walked == Self.numbers(fixture, access, "Sort=status"))
        #expect(walked.sorted() == ["S-1", "S-2", "S-3", "S-4"])
        #expect(walked.first == "S-3" && walked.last == "S-1")
    }

    @Test(arguments: [
        "Sort=number", "Sort=status%20sideways", "Sort=status,", "Sort=--status", "Sort=status%20asc%20desc",
    ])
    func unknownSortsAreRefused(query: String) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let response = M.list(fixture, access, query)
        #expect(response.status == .badRequest)
        #expect(M.spec.problems(F.json(response), schema: "ProblemDetails") == [])
    }
}
