import Foundation
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

/// A firm connected to the sandbox (account in IL unless a test moves it) and the resolver as a
/// worker uses it: through the token provider, its database as the app role.
struct MatterTypeFixture {
    let sandbox: SmokeballSandbox
    let connected: ConnectedFirm
    let seed: Seed
    let database: Database
    let tokens: SmokeballTokenProvider

    init(_ sandbox: SmokeballSandbox) throws {
        self.sandbox = sandbox
        connected = try ConnectedFirm(sandbox)
        seed = try Seed(sandbox.database)
        database = Database(url: sandbox.database.appURL)
        tokens = try connected.provider()
    }

    static func with(_ body: (MatterTypeFixture) throws -> Void) throws {
        try SmokeballSandbox.with { sandbox in try body(try MatterTypeFixture(sandbox)) }
    }

    var firm: UUID { connected.firm.id }

    func resolve(_ request: MatterTypeRequest, ttl: TimeInterval = MatterTypeResolver.defaultTTL) throws
        -> ResolvedMatterType
    {
        let resolver = MatterTypeResolver(database: database, ttl: ttl)
        let scope = connected.scope
        return try tokens.withAccess(scope) { client, access in
            try resolver.resolve(
                request, scope: scope, session: SmokeballSession(client: client, access: access, lane: .interactive))
        }
    }

    /// What `body` asked of the sandbox: the paths of the requests it logged meanwhile.
    func requests<T>(_ body: () throws -> T) throws -> (T, [String]) {
        let before = try sandbox.requestLog().count
        let value = try body()
        let after = try sandbox.requestLog()
        return (value, after.dropFirst(before).map { $0["path"] as? String ?? "?" })
    }

    /// The firm's settings as stored (what the status route writes).
    func setSettings(_ json: String) throws {
        try seed.connection.execute(
            "UPDATE firm_integrations SET settings = $2::jsonb WHERE firm_id = $1", [firm, SQLValue.json(json)])
    }

    /// The sandbox account's state (`GET /firm`'s `streetAddress.state`).
    func setFirmState(_ state: String) throws {
        let answer = try sandbox.service.send(
            "POST", "/_sandbox/accounts",
            body: SmokeballSandbox.json([
                "id": sandbox.accountID, "name": "Client Tests Law", "region": "US", "state": state, "users": [],
            ]), contentType: "application/json", base: sandbox.url)
        try #require(answer.status == 201)
    }

    /// A catalogue type's id.
    func typeID(_ location: String, _ category: String, _ name: String) throws -> String {
        try Connection(url: sandbox.store.url).execute(
            "SELECT id::text AS id FROM sb_matter_types WHERE location = $1 AND category = $2 AND name = $3",
            [location, category, name]
        ).single().string("id")
    }

    /// Makes the firm's cached types `seconds` older.
    func ageCache(by seconds: Double) throws {
        try seed.asFirm(firm) {
            let changed = try $0.execute(
                """
                UPDATE smokeball_matter_type_cache SET fetched_at = fetched_at - make_interval(secs => $2::float8)
                WHERE firm_id = $1
                """, [firm, seconds]
            ).affectedRows
            try #require(changed == 1)
        }
    }
}

/// Matter type resolution (custom mapping, built-in, the category's general type) against the
/// sandbox's catalogue, and the per-firm cache in PostgreSQL (requests counted in the sandbox's log).
@Suite(.serialized) struct MatterTypeResolverTests {
    static let divorce = MatterTypeRequest(
        caseType: "divorce_standard", displayName: "Divorce", category: "Family Law", builtInName: "Divorce")

    /// A case type whose built-in name no catalogue has.
    static func unknown(_ category: String, displayName: String = "Collaborative Law") -> MatterTypeRequest {
        MatterTypeRequest(
            caseType: "divorce_standard", displayName: displayName, category: category, builtInName: displayName)
    }

    @Test func aCustomMappingByIdWinsOverTheBuiltInOneInAnyCategory() throws {
        try MatterTypeFixture.with { fixture in
            let asylum = try fixture.typeID("IL", "Immigration", "Asylum")
            try fixture.setSettings(#"{"case_type_mappings": {"divorce_standard": "\#(asylum)"}}"#)
            let resolved = try fixture.resolve(Self.divorce)
            #expect(resolved.id == asylum)
            #expect(resolved.name == "Asylum")
            #expect(resolved.category == "Immigration")
            #expect(resolved.source == .custom)
            #expect(resolved.clientRole == "Applicant")
            #expect(resolved.location == "IL")
        }
    }

    @Test func aCustomMappingByNameMatchesCaseInsensitivelyInAnyCategory() throws {
        try MatterTypeFixture.with { fixture in
            try fixture.setSettings(#"{"case_type_mappings": {"divorce_standard": "dui / dwi"}}"#)
            let resolved = try fixture.resolve(Self.divorce)
            #expect(resolved.id == (try fixture.typeID("IL", "Criminal", "DUI / DWI")))
            #expect(resolved.name == "DUI / DWI")
            #expect(resolved.source == .custom)
            #expect(resolved.clientRole == "Defendant")
        }
    }

    @Test func aCustomMappingThatNamesNoTypeFailsRatherThanFallingBack() throws {
        try MatterTypeFixture.with { fixture in
            try fixture.setSettings(#"{"case_type_mappings": {"divorce_standard": "Divorce (Contested, Old)"}}"#)
            let error = try #require(throws: JobError.self) { try fixture.resolve(Self.divorce) }
            #expect(error.code == MatterTypeResolver.notFound)
            #expect(error.message == "configure a custom mapping for Divorce")
            // Another case type's mapping does not apply to this one.
            try fixture.setSettings(#"{"case_type_mappings": {"child_custody": "Asylum"}}"#)
            #expect(try fixture.resolve(Self.divorce).source == .builtIn)
        }
    }

    @Test func theBuiltInMappingIsTheNameWithinTheCategory() throws {
        try MatterTypeFixture.with { fixture in
            let custody = MatterTypeRequest(
                caseType: "child_custody", displayName: "Child Custody", category: "family law",
                builtInName: "CUSTODY")
            let resolved = try fixture.resolve(custody)
            #expect(resolved.id == (try fixture.typeID("IL", "Family Law", "Custody")))
            #expect(resolved.source == .builtIn)
            #expect(resolved.clientRole == "Petitioner")
            // "Guardianship" is in two categories: the request's category decides.
            let guardianship = MatterTypeRequest(
                caseType: "guardianship", displayName: "Guardianship", category: "Estate Planning",
                builtInName: "Guardianship")
            #expect(
                try fixture.resolve(guardianship).id == (try fixture.typeID("IL", "Estate Planning", "Guardianship")))
        }
    }

    @Test func withoutABuiltInTypeTheCategorysGeneralTypeIsUsedInTheDocumentedOrder() throws {
        try MatterTypeFixture.with { fixture in
            // IL Family Law has "General" and "Family Law": "General" comes first.
            let family = try fixture.resolve(Self.unknown("Family Law"))
            #expect(family.id == (try fixture.typeID("IL", "Family Law", "General")))
            #expect(family.source == .general)
            #expect(family.clientRole == "Client")
            let estate = try fixture.resolve(Self.unknown("Estate Planning"))
            #expect(estate.name == "Estate Planning - General")
            try fixture.setSettings(#"{"location": "ca"}"#)
            #expect(try fixture.resolve(Self.unknown("Personal Injury")).name == "General Personal Injury")
            #expect(try fixture.resolve(Self.unknown("Family Law")).name == "Family Law - General")
            try fixture.setSettings(#"{"location": "NY"}"#)
            #expect(try fixture.resolve(Self.unknown("Immigration")).name == "Immigration")
        }
    }

    @Test func aTypeThatCannotBeFoundFailsWithTheCaseTypesNameAndIsNotRetried() throws {
        try MatterTypeFixture.with { fixture in
            // IL Immigration has no general type.
            let error = try #require(throws: JobError.self) {
                try fixture.resolve(Self.unknown("Immigration", displayName: "Investor Visa"))
            }
            #expect(error.code.rawValue == "matter_type_not_found")
            #expect(error.message == "configure a custom mapping for Investor Visa")
            #expect(error.retryable == false)
            // A lead type named "General" (TX Immigration) is never a matter's type.
            try fixture.setSettings(#"{"location": "TX"}"#)
            #expect(throws: JobError.self) { try fixture.resolve(Self.unknown("Immigration")) }
            // Nor is a lead type reached by name.
            try fixture.setSettings(#"{"location": "TX", "case_type_mappings": {"divorce_standard": "General"}}"#)
            #expect(throws: JobError.self) { try fixture.resolve(Self.divorce) }
        }
    }

    @Test func theClientRoleIsTheTypesFirstRepresentativeOptionOrNilWhenItListsNone() throws {
        try MatterTypeFixture.with { fixture in
            let estate = MatterTypeRequest(
                caseType: "probate", displayName: "Probate", category: "Estate Planning", builtInName: "Probate")
            #expect(try fixture.resolve(estate).clientRole == "Executor")
            try Connection(url: fixture.sandbox.store.url).execute(
                """
                INSERT INTO sb_matter_types (id, version_id, name, category, location, region, type, representative_options)
                VALUES (gen_random_uuid(), gen_random_uuid(), 'Mediation', 'Family Law', 'IL', 'US', 0, '{}')
                """)
            let mediation = MatterTypeRequest(
                caseType: "mediation", displayName: "Mediation", category: "Family Law", builtInName: "Mediation")
            let resolved = try fixture.resolve(mediation, ttl: 0)
            #expect(resolved.name == "Mediation")
            #expect(resolved.clientRole == nil)
        }
    }

    @Test func theLocationIsTheSettingElseTheSmokeballFirmsState() throws {
        try MatterTypeFixture.with { fixture in
            try fixture.setFirmState("TX")
            // The firm's state: asked of Smokeball once, with the types.
            let (fromFirm, first) = try fixture.requests { try fixture.resolve(Self.divorce) }
            #expect(fromFirm.location == "TX")
            #expect(fromFirm.id == (try fixture.typeID("TX", "Family Law", "Divorce")))
            #expect(first == ["/firm", "/mattertypes"])
            // A location setting wins, and a fresh cache of another location is not used for it.
            try fixture.setSettings(#"{"location": "fl"}"#)
            let (fromSetting, second) = try fixture.requests { try fixture.resolve(Self.divorce) }
            #expect(fromSetting.location == "FL")
            #expect(fromSetting.id == (try fixture.typeID("FL", "Family Law", "Divorce")))
            #expect(second == ["/mattertypes"])
            // Back to the firm's state: asked again, as the setting's fetch did not learn it.
            try fixture.setSettings("{}")
            let (again, third) = try fixture.requests { try fixture.resolve(Self.divorce) }
            #expect(again.location == "TX")
            #expect(third == ["/firm", "/mattertypes"])
        }
    }

    @Test func aSecondResolveWithinTheTTLMakesNoRequestFromAnotherProcessToo() throws {
        try MatterTypeFixture.with { fixture in
            let (_, first) = try fixture.requests { try fixture.resolve(Self.divorce) }
            #expect(first == ["/firm", "/mattertypes"])
            // Another resolver with its own session, as another worker process has: the row is shared.
            let other = MatterTypeResolver(database: Database(url: fixture.sandbox.database.appURL))
            let scope = fixture.connected.scope
            let (resolved, second) = try fixture.requests {
                try fixture.tokens.withAccess(scope) { client, access in
                    try other.resolve(
                        Self.unknown("Family Law"), scope: scope,
                        session: SmokeballSession(client: client, access: access, lane: .background))
                }
            }
            #expect(resolved.source == .general)
            #expect(second.isEmpty)
            // A changed mapping is applied to the cached types without a request.
            try fixture.setSettings(#"{"case_type_mappings": {"divorce_standard": "Asylum"}}"#)
            let (mapped, third) = try fixture.requests { try fixture.resolve(Self.divorce) }
            #expect(mapped.name == "Asylum")
            #expect(third.isEmpty)
        }
    }

    @Test func typesOlderThanTheTTLAreFetchedAgain() throws {
        try MatterTypeFixture.with { fixture in
            _ = try fixture.resolve(Self.divorce)
            try fixture.ageCache(by: 120)
            // Two minutes old: fresh for a day's TTL, stale for a minute's.
            let (_, daily) = try fixture.requests { try fixture.resolve(Self.divorce) }
            #expect(daily.isEmpty)
            let (_, minute) = try fixture.requests { try fixture.resolve(Self.divorce, ttl: 60) }
            #expect(minute == ["/firm", "/mattertypes"])
            // The refetch stored a new time: fresh again for the minute's TTL.
            let (_, after) = try fixture.requests { try fixture.resolve(Self.divorce, ttl: 60) }
            #expect(after.isEmpty)
            try fixture.ageCache(by: 25 * 3600)
            let (_, expired) = try fixture.requests { try fixture.resolve(Self.divorce) }
            #expect(expired == ["/firm", "/mattertypes"])
        }
    }

    @Test func typesFetchedForAnotherSmokeballAccountAreFetchedAgain() throws {
        try MatterTypeFixture.with { fixture in
            _ = try fixture.resolve(Self.divorce)
            // The firm reconnected to another Smokeball account (the sandbox's is the same one here).
            try fixture.seed.connection.execute(
                "UPDATE firm_integrations SET smokeball_account_id = $2 WHERE firm_id = $1",
                [fixture.firm, UUID().uuidString.lowercased()])
            let (_, moved) = try fixture.requests { try fixture.resolve(Self.divorce) }
            #expect(moved == ["/firm", "/mattertypes"])
            let (_, again) = try fixture.requests { try fixture.resolve(Self.divorce) }
            #expect(again.isEmpty)
        }
    }

    @Test func anotherFirmCannotReadOrOverwriteAFirmsCachedTypes() throws {
        try MatterTypeFixture.with { fixture in
            _ = try fixture.resolve(Self.divorce)
            let other = try fixture.seed.firmWithUsers("Other Firm")
            let app = try Connection(url: fixture.sandbox.database.appURL)
            try app.transaction { connection in
                _ = try UserScope(userID: other.admin).enter(connection)
                #expect(
                    try connection.execute("SELECT count(*) AS n FROM smokeball_matter_type_cache").single().int("n")
                        == 0)
                #expect(
                    try connection.execute(
                        "UPDATE smokeball_matter_type_cache SET location = 'NY' WHERE firm_id = $1", [fixture.firm]
                    ).affectedRows == 0)
            }
            // Nor write a row for a firm that is not its own (one without a row: no key conflict).
            let third = try fixture.seed.firm("Third Firm")
            #expect(throws: DatabaseError.self) {
                try app.transaction { connection in
                    _ = try UserScope(userID: other.admin).enter(connection)
                    try connection.execute(
                        "INSERT INTO smokeball_matter_type_cache (firm_id, location, types) VALUES ($1, 'NY', '[]')",
                        [third])
                }
            }
            // Firm A's row is as it was.
            let row = try fixture.seed.asFirm(fixture.firm) {
                try $0.execute("SELECT location FROM smokeball_matter_type_cache WHERE firm_id = $1", [fixture.firm])
                    .single()
            }
            #expect(try row.string("location") == "IL")
        }
    }
}
