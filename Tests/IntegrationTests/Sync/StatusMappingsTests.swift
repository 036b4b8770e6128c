import Basics
import FastCGI
import Foundation
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

/// The status route's mapping editor part (`GET status?include=mappings`) and the check of
/// `case_type_mappings` on update, against the sandbox's catalogue through the token provider
/// (a firm connected to the sandbox, account in IL); Smokeball's requests counted in its log.
@Suite(.serialized) struct StatusMappingsTests {
    struct Fixture {
        let types: MatterTypeFixture
        let handler: StatusHandler

        init(_ types: MatterTypeFixture) {
            self.types = types
            handler = StatusHandler(
                authenticator: Authenticator(secret: Array(TestEnvironment.jwtSecret.utf8)),
                database: types.database,
                matterTypes: MatterTypeCatalogue(
                    resolver: MatterTypeResolver(database: types.database), tokens: types.tokens))
        }

        static func with(_ body: (Fixture) throws -> Void) throws {
            try MatterTypeFixture.with { try body(Fixture($0)) }
        }

        var admin: UUID { types.connected.firm.admin }
        var standard: UUID { types.connected.firm.standard }

        func call(
            _ method: String = "GET", query: [(String, String)] = [], user: UUID? = nil, body: String? = nil
        ) -> (status: Int, body: [String: Any]) {
            var headers = ["authorization": "Bearer " + TestEnvironment.token(subject: (user ?? admin).uuidString)]
            if body != nil { headers["content-type"] = "application/json" }
            let queryString = FormURLEncoding.encode(query)
            let request = Request(
                method: method, path: "/api/v1/integrations/smokeball/status",
                query: QueryString.dictionary(queryString), queryString: queryString, headers: headers,
                body: Array((body ?? "").utf8), requestID: "test")
            let response = respond(to: request, with: handler, log: Logger(route: "status")).0
            let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
            return (response.status.code, json)
        }

        /// `GET ?include=mappings`: the mappings object, and the paths asked of Smokeball meanwhile.
        func mappings(refresh: Bool = false, user: UUID? = nil) throws -> ([String: Any], [String]) {
            var query = [("include", "mappings")]
            if refresh { query.append(("refresh", "1")) }
            let ((status, body), paths) = try types.requests { call(query: query, user: user) }
            try #require(status == 200, "\(body)")
            return (try #require(body["mappings"] as? [String: Any]), paths)
        }

        static func caseType(_ mappings: [String: Any], _ key: String) throws -> [String: Any] {
            try #require((mappings["case_types"] as? [[String: Any]])?.first { $0["key"] as? String == key })
        }

        func storedSettings() throws -> [String: Any] {
            let row = try types.seed.connection.execute(
                "SELECT settings::text AS s FROM firm_integrations WHERE firm_id = $1", [types.firm]
            ).single()
            return try #require(
                try JSONSerialization.jsonObject(with: Data(try row.string("s").utf8)) as? [String: Any])
        }

        func caseTypeCount() throws -> Int {
            Int(try types.seed.connection.execute("SELECT count(*) AS n FROM case_types").single().int("n"))
        }
    }

    static func reference(_ value: Any?) -> String? {
        guard let object = value as? [String: Any] else { return nil }
        return "\(object["id"] as? String ?? "?") \(object["name"] as? String ?? "?")"
    }

    // MARK: GET ?include=mappings

    @Test func mappingsListTheFirmsMatterTypesAndEachCaseTypesDefaultOverrideAndEffectiveType() throws {
        try Fixture.with { fixture in
            try fixture.types.setSettings(
                #"{"case_type_mappings": {"divorce_standard": "asylum", "child_custody": "No Such Type"}}"#)
            let (mappings, paths) = try fixture.mappings(user: fixture.standard)
            #expect(paths.contains("/mattertypes"))
            #expect(mappings["location"] as? String == "IL")
            #expect(mappings["error"] is NSNull)
            #expect(mappings["fetched_at"] is String)
            let types = try #require(mappings["matter_types"] as? [[String: Any]])
            #expect(!types.isEmpty)
            // Sorted by category, then name.
            let order = types.map { ($0["category"] as? String ?? "", ($0["name"] as? String ?? "").lowercased()) }
            #expect(zip(order, order.dropFirst()).allSatisfy { $0 <= $1 })
            #expect(types.allSatisfy { Set($0.keys) == ["id", "name", "category"] })
            let caseTypes = try #require(mappings["case_types"] as? [[String: Any]])
            #expect(caseTypes.count == (try fixture.caseTypeCount()))

            let asylum = try fixture.types.typeID("IL", "Immigration", "Asylum")
            let divorce = try Fixture.caseType(mappings, "divorce_standard")
            #expect(divorce["name"] as? String == "Divorce")
            #expect(divorce["category"] as? String == "Family Law")
            #expect(
                Self.reference(divorce["default"])
                    == "\(try fixture.types.typeID("IL", "Family Law", "Divorce")) Divorce")
            #expect(divorce["override"] as? String == "asylum")
            #expect(Self.reference(divorce["effective"]) == "\(asylum) Asylum")
            #expect(divorce["problem"] is NSNull)

            let custody = try Fixture.caseType(mappings, "child_custody")
            #expect(
                Self.reference(custody["default"])
                    == "\(try fixture.types.typeID("IL", "Family Law", "Custody")) Custody")
            #expect(custody["effective"] is NSNull)
            #expect(custody["problem"] as? String == #"no Smokeball matter type named "No Such Type""#)

            // Without an override the effective type is the default.
            let support = try Fixture.caseType(mappings, "child_support")
            #expect(support["override"] is NSNull)
            #expect(Self.reference(support["effective"]) == Self.reference(support["default"]))
        }
    }

    @Test func withoutIncludeMappingsIsNullAndSmokeballIsNotAsked() throws {
        try Fixture.with { fixture in
            let ((status, body), paths) = try fixture.types.requests { fixture.call() }
            #expect(status == 200)
            #expect(body["mappings"] is NSNull)
            #expect(paths.isEmpty)
            #expect(fixture.call(query: [("include", "everything")]).status == 400)
            #expect(fixture.call(query: [("include", "mappings"), ("refresh", "yes")]).status == 400)
        }
    }

    @Test func aFreshCacheIsUsedAStaleOneIsRefetchedAndRefreshAlwaysFetches() throws {
        try Fixture.with { fixture in
            let (first, firstPaths) = try fixture.mappings()
            #expect(firstPaths.filter { $0 == "/mattertypes" }.count == 1)
            let (second, secondPaths) = try fixture.mappings()
            #expect(secondPaths.isEmpty)
            #expect(second["fetched_at"] as? String == first["fetched_at"] as? String)
            try fixture.types.ageCache(by: MatterTypeResolver.defaultTTL + 60)
            let (_, stalePaths) = try fixture.mappings()
            #expect(stalePaths.filter { $0 == "/mattertypes" }.count == 1)
            let (_, refreshPaths) = try fixture.mappings(refresh: true)
            #expect(refreshPaths.filter { $0 == "/mattertypes" }.count == 1)
        }
    }

    @Test func smokeballDownGivesAnErrorInA200AndTheCaseTypesAreStillListed() throws {
        try Fixture.with { fixture in
            try fixture.types.sandbox.addFault(["path_prefix": "/mattertypes", "status": 503])
            defer { try? fixture.types.sandbox.clearFaults() }
            let (mappings, paths) = try fixture.mappings()
            #expect(paths.contains("/mattertypes"))
            let error = try #require(mappings["error"] as? [String: Any])
            #expect(error["code"] as? String == "smokeball_unavailable")
            #expect((mappings["matter_types"] as? [Any])?.isEmpty == true)
            #expect(mappings["fetched_at"] is NSNull)
            let caseTypes = try #require(mappings["case_types"] as? [[String: Any]])
            #expect(caseTypes.count == (try fixture.caseTypeCount()))
            #expect(caseTypes.allSatisfy { $0["default"] is NSNull && $0["effective"] is NSNull })
        }
    }

    @Test func aFirmThatIsNotConnectedGetsNotConnectedWithoutAskingSmokeball() throws {
        try Fixture.with { fixture in
            let other = try fixture.types.seed.firmWithUsers("Never Connected")
            let ((status, body), paths) = try fixture.types.requests {
                fixture.call(query: [("include", "mappings"), ("refresh", "1")], user: other.standard)
            }
            #expect(status == 200)
            #expect(paths.isEmpty)
            let mappings = try #require(body["mappings"] as? [String: Any])
            #expect((mappings["error"] as? [String: Any])?["code"] as? String == "not_connected")
            #expect((mappings["case_types"] as? [Any])?.count == (try fixture.caseTypeCount()))
        }
    }

    // MARK: PUT/PATCH case_type_mappings

    @Test func anInvalidMappingIsRefusedWith422AndNothingIsSaved() throws {
        try Fixture.with { fixture in
            let (status, body) = fixture.call(
                "PATCH",
                body:
                    #"{"auto_sync_on_approval": false, "case_type_mappings": {"asylum": "Asylum", "divorce_standard": "Divorse"}}"#
            )
            #expect(status == 422)
            let error = try #require(body["error"] as? [String: Any])
            #expect(error["code"] as? String == "invalid_mapping")
            #expect(error["message"] as? String == #"Divorce: no Smokeball matter type named "Divorse""#)
            #expect(error["field"] as? String == "case_type_mappings.divorce_standard")
            let stored = try? fixture.storedSettings()
            #expect(stored?["auto_sync_on_approval"] as? Bool != false)
            #expect((stored?["case_type_mappings"] as? [String: Any])?.isEmpty ?? true)
            // PUT checks the same way.
            #expect(fixture.call("PUT", body: #"{"case_type_mappings": {"adoption": "Adopshun"}}"#).status == 422)
        }
    }

    @Test func aValidMappingByIdOrByNameIsSaved() throws {
        try Fixture.with { fixture in
            let asylum = try fixture.types.typeID("IL", "Immigration", "Asylum")
            let (status, body) = fixture.call(
                "PATCH",
                body: #"{"case_type_mappings": {"divorce_standard": "\#(asylum)", "child_custody": "dui / dwi"}}"#)
            #expect(status == 200, "\(body)")
            let mappings = try #require(try fixture.storedSettings()["case_type_mappings"] as? [String: String])
            #expect(mappings == ["divorce_standard": asylum, "child_custody": "dui / dwi"])
        }
    }

    @Test func otherSettingsAndRemovalsSaveWithoutSmokeballWhileAMappingChangeNeedsIt() throws {
        try Fixture.with { fixture in
            try fixture.types.sandbox.addFault(["path_prefix": "/mattertypes", "status": 503])
            defer { try? fixture.types.sandbox.clearFaults() }
            let ((status, _), paths) = try fixture.types.requests {
                fixture.call(
                    "PATCH",
                    body: #"{"auto_sync_on_approval": false, "case_type_mappings": {"divorce_standard": null}}"#)
            }
            #expect(status == 200)
            #expect(paths.isEmpty)
            #expect(try fixture.storedSettings()["auto_sync_on_approval"] as? Bool == false)
            // A mapping change while Smokeball is down: 503, nothing saved.
            let (down, body) = fixture.call(
                "PATCH", body: #"{"auto_sync_on_approval": true, "case_type_mappings": {"divorce_standard": "Asylum"}}"#
            )
            #expect(down == 503)
            #expect((body["error"] as? [String: Any])?["code"] as? String == "smokeball_unavailable")
            #expect(try fixture.storedSettings()["auto_sync_on_approval"] as? Bool == false)
            // A standard user is refused before Smokeball is asked.
            #expect(
                fixture.call("PATCH", user: fixture.standard, body: #"{"case_type_mappings": {"adoption": "x"}}"#)
                    .status
                    == 403)
            // Not connected: 409.
            let other = try fixture.types.seed.firmWithUsers("Never Connected")
            let (notConnected, refused) = fixture.call(
                "PATCH", user: other.admin, body: #"{"case_type_mappings": {"adoption": "Adoption"}}"#)
            #expect(notConnected == 409)
            #expect((refused["error"] as? [String: Any])?["code"] as? String == "not_connected")
        }
    }
}

extension Seed {
    /// A fresh cached catalogue for `firm` (location IL, the firm's own), one matter type per
    /// name: a settings update that sets these names as mappings is checked without Smokeball.
    func cacheMatterTypes(firm: UUID, _ names: [String]) throws {
        let types = names.enumerated().map { index, name in
            ["id": "type-\(index)", "name": name, "category": "Test", "type": 0, "representative_options": []]
                as [String: Any]
        }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: types), as: UTF8.self)
        try asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO smokeball_matter_type_cache (firm_id, location, firm_location, types)
                VALUES ($1, 'IL', 'IL', $2::jsonb)
                """, [firm, SQLValue.json(json)])
        }
    }
}
