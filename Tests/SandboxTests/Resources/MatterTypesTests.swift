import FastCGI
import Foundation
import Testing

@testable import SmokeballSandbox

/// `GET /mattertypes` over the seeded catalogue: the region's types only, Smokeball's filters,
/// and the paging envelope.
@Suite struct MatterTypesTests {
    typealias F = SandboxFixture

    static func page(_ fixture: F, _ token: String, _ query: [String: String]) -> [String: Any] {
        let response = fixture.api("GET", "/mattertypes", token: token, query: query)
        #expect(response.status == .ok)
        return F.json(response)
    }

    static func items(_ page: [String: Any]) -> [[String: Any]] { page["value"] as? [[String: Any]] ?? [] }

    /// Every CaseHug case type's default mapping exists in the states the demo firms use.
    @Test(arguments: ["CA", "NY", "TX", "FL", "IL"])
    func everyDefaultMappingExistsInTheState(state: String) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let pairs: [(String, String)] = [
            ("Family Law", "Divorce"), ("Family Law", "Custody"), ("Immigration", "Asylum"),
            ("Personal Injury", "Motor Vehicle Accident"), ("Estate Planning", "Will"), ("Estate Planning", "Probate"),
        ]
        for (category, name) in pairs {
            let found = Self.items(Self.page(fixture, access, ["Location": state, "Category": category, "Name": name]))
            #expect(found.contains { $0["name"] as? String == name && $0["location"] as? String == state })
        }
    }

    @Test func filtersAreCaseInsensitiveAndNameIsAPartialMatch() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let divorce = Self.items(Self.page(fixture, access, ["location": "ny", "name": "DIVOR"]))
        #expect(!divorce.isEmpty)
        #expect(divorce.allSatisfy { ($0["name"] as? String)?.lowercased().contains("divor") == true })
        #expect(divorce.allSatisfy { $0["location"] as? String == "NY" })
        // A US firm sees US types only; AU/UK samples belong to other regions' accounts.
        #expect(Self.items(Self.page(fixture, access, ["Location": "NSW"])).isEmpty)
        let leads = Self.items(Self.page(fixture, access, ["Type": "1"]))
        #expect(!leads.isEmpty)
        #expect(leads.allSatisfy { $0["type"] as? Int == 1 })
        #expect(Self.items(Self.page(fixture, access, [:])).allSatisfy { $0["isDeleted"] as? Bool == false })
    }

    @Test func pagesWalkTheWholeListWithConsistentLinks() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let all = Self.page(fixture, access, ["Location": "CA"])
        let size = try #require(all["size"] as? Int)
        #expect(size > 10)
        #expect(Self.items(all).count == size)
        var seen: [String] = []
        var offset = 0
        while offset < size {
            let page = Self.page(fixture, access, ["Location": "CA", "Offset": String(offset), "Limit": "7"])
            #expect(page["offset"] as? Int == offset)
            #expect(page["limit"] as? Int == 7)
            #expect(page["size"] as? Int == size)
            seen += Self.items(page).compactMap { $0["id"] as? String }
            let next = page["next"] as? [String: Any]
            #expect((next == nil) == (offset + 7 >= size))
            #expect((next?["href"] as? String)?.contains("offset=\(offset + 7)") ?? true)
            #expect((page["last"] as? [String: Any])?["href"] as? String != nil)
            offset += 7
        }
        #expect(seen == Self.items(all).compactMap { $0["id"] as? String })
        #expect(Set(seen).count == size)
    }

    @Test(arguments: [
        ["Limit": "0"], ["Limit": "501"], ["Offset": "-1"], ["Offset": "2147483648"], ["Limit": "ten"], ["Type": "2"],
        ["Type": "Lead"],
    ])
    func outOfRangeParametersAreBadRequests(query: [String: String]) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let response = fixture.api("GET", "/mattertypes", token: access, query: query)
        #expect(response.status == .badRequest)
        #expect(F.json(response)["status"] as? Int == 400)
    }

    /// An empty parameter is no filter, for `Type` as for every other one.
    @Test(arguments: [["Type": ""], ["Name": ""], ["Offset": "", "Limit": ""]])
    func emptyParametersAreNoFilter(query: [String: String]) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let all = F.json(fixture.api("GET", "/mattertypes", token: access))
        let response = fixture.api("GET", "/mattertypes", token: access, query: query)
        #expect(response.status == .ok, "\(F.text(response))")
        #expect(F.json(response)["size"] as? Int == all["size"] as? Int)
        #expect((all["size"] as? Int ?? 0) > 0)
    }
}
