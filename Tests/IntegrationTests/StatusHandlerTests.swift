import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// The status route's handler against a real migrated database, called without sockets.
@Suite struct StatusHandlerTests {
    struct Fixture {
        let database: ServiceDatabase
        let seed: Seed
        let firm: UUID
        let admin: UUID
        let standard: UUID
        let handler: StatusHandler

        init(_ database: ServiceDatabase) throws {
            self.database = database
            seed = try Seed(database)
            let users = try seed.firmWithUsers("Firm A")
            (firm, admin, standard) = (users.id, users.admin, users.standard)
            // The mappings the tests save name these types (checked against the firm's catalogue).
            try seed.cacheMatterTypes(
                firm: firm,
                ["Asylum", "Asylum (US)", "Asylum (custom)", "Adoption (custom)", "Probate", "Probate NY", "A-only"])
            handler = StatusHandler(
                configuration: Configuration(
                    databaseURL: database.appURL, jwtSecret: Array(TestEnvironment.jwtSecret.utf8)))
        }

        func call(_ method: String, user: UUID?, body: String? = nil, contentType: String = "application/json")
            -> Response
        {
            var headers: [String: String] = [:]
            if let user { headers["authorization"] = "Bearer " + TestEnvironment.token(subject: user.uuidString) }
            if body != nil { headers["content-type"] = contentType }
            let request = Request(
                method: method, path: "/api/v1/integrations/smokeball/status", headers: headers,
                body: Array((body ?? "").utf8), requestID: "test-request")
            return respond(to: request, with: handler, log: Logger(route: "status")).0
        }
    }

    static func json(_ response: Response) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }

    static func errorCode(_ response: Response) throws -> String? {
        (try json(response)["error"] as? [String: Any])?["code"] as? String
    }

    @Test func getAnswersDefaultsForAFirmThatNeverConnected() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let response = fixture.call("GET", user: fixture.standard)
            #expect(response.status.code == 200)
            let body = try Self.json(response)
            #expect(body["connected"] as? Bool == false)
            #expect(body["smokeball"] is NSNull)
            #expect(body["last_sync"] is NSNull)
            #expect(body["can_manage_settings"] as? Bool == false)
            let settings = try #require(body["settings"] as? [String: Any])
            #expect(settings["auto_sync_on_approval"] as? Bool == true)
            #expect(settings["auto_sync_on_matter_created"] as? Bool == false)
            #expect((settings["case_type_mappings"] as? [String: Any])?.isEmpty == true)
            // Reading creates nothing.
            #expect(try fixture.seed.settingsJSON(firm: fixture.firm) == nil)
        }
    }

    @Test func getReportsAConnectedAccountAndTheLastSync() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let matter = try fixture.seed.matter(firm: fixture.firm)
            try fixture.seed.asFirm(fixture.firm) { connection in
                let integration = try connection.execute(
                    """
                    INSERT INTO firm_integrations (firm_id, platform, access_token, refresh_token, token_expires_at,
                        refresh_token_expires_at, is_active, smokeball_account_id, account_info, region, connected_at)
                    VALUES ($1, 'smokeball', '\\x01'::bytea, '\\x02'::bytea, '2030-01-01T00:00:00Z',
                        '2030-02-01T00:00:00Z', true, 'acct-1', '{"firm_name":"Smith Law"}', 'US', now())
                    RETURNING id
                    """, [fixture.firm]
                ).single().uuid("id")
                try connection.execute(
                    """
                    INSERT INTO integration_sync_logs (firm_id, integration_id, matter_id, action, status, external_id,
                        created_at)
                    VALUES ($1, $2, $3, 'sync_matter', 'failed', NULL, now() - interval '1 hour'),
                           ($1, $2, $3, 'sync_matter', 'success', 'sb-matter-9', now())
                    """, [fixture.firm, integration, matter])
            }
            let body = try Self.json(fixture.call("GET", user: fixture.admin))
            #expect(body["connected"] as? Bool == true)
            #expect(body["needs_reconnect"] as? Bool == false)
            #expect((body["token_expires_at"] as? String)?.hasPrefix("2030-01-01T00:00:00") == true)
            let account = try #require(body["smokeball"] as? [String: Any])
            #expect(account["firm_name"] as? String == "Smith Law")
            #expect(account["account_id"] as? String == "acct-1")
            let last = try #require(body["last_sync"] as? [String: Any])
            #expect(last["status"] as? String == "success")
            #expect(last["external_id"] as? String == "sb-matter-9")
            #expect(last["matter_id"] as? String == matter.uuidString.lowercased())
            // Tokens never appear in the answer, sealed or otherwise.
            #expect(body["access_token"] == nil && body["refresh_token"] == nil)
        }
    }

    @Test func firmAdminReplacesSettingsWithPut() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let response = fixture.call(
                "PUT", user: fixture.admin,
                body: #"{"auto_sync_on_approval": false, "case_type_mappings": {"asylum": " Asylum (US) "}}"#)
            #expect(response.status.code == 200)
            let settings = try #require(try Self.json(response)["settings"] as? [String: Any])
            #expect(settings["auto_sync_on_approval"] as? Bool == false)
            #expect(settings["auto_sync_on_matter_created"] as? Bool == false)
            #expect(settings["case_type_mappings"] as? [String: String] == ["asylum": "Asylum (US)"])
            // Persisted, and visible to the firm's standard users.
            let again = try #require(
                try Self.json(fixture.call("GET", user: fixture.standard))["settings"] as? [String: Any])
            #expect(again["case_type_mappings"] as? [String: String] == ["asylum": "Asylum (US)"])
            // PUT replaces: fields left out go back to their defaults.
            _ = fixture.call("PUT", user: fixture.admin, body: #"{"auto_sync_on_matter_created": true}"#)
            let replaced = try #require(
                try Self.json(fixture.call("GET", user: fixture.admin))["settings"] as? [String: Any])
            #expect(replaced["auto_sync_on_approval"] as? Bool == true)
            #expect(replaced["auto_sync_on_matter_created"] as? Bool == true)
            #expect((replaced["case_type_mappings"] as? [String: String])?.isEmpty == true)
        }
    }

    @Test func patchMergesMappingsAndNullRemovesOne() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            _ = fixture.call("PATCH", user: fixture.admin, body: #"{"case_type_mappings": {"asylum": "Asylum"}}"#)
            _ = fixture.call("PATCH", user: fixture.admin, body: #"{"case_type_mappings": {"probate": "Probate NY"}}"#)
            var settings = try #require(
                try Self.json(fixture.call("GET", user: fixture.admin))["settings"] as? [String: Any])
            #expect(
                settings["case_type_mappings"] as? [String: String] == ["asylum": "Asylum", "probate": "Probate NY"])
            let response = fixture.call(
                "PATCH", user: fixture.admin,
                body: #"{"case_type_mappings": {"asylum": null}, "auto_sync_on_approval": false}"#)
            #expect(response.status.code == 200)
            settings = try #require(try Self.json(response)["settings"] as? [String: Any])
            #expect(settings["case_type_mappings"] as? [String: String] == ["probate": "Probate NY"])
            #expect(settings["auto_sync_on_approval"] as? Bool == false)
        }
    }

    @Test func theDocumentsFolderAndLocationAreSavedTrimmedAndUppercasedAndNullLocationMeansTheFirms() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            var settings = try #require(
                try Self.json(fixture.call("GET", user: fixture.admin))["settings"] as? [String: Any])
            #expect(settings["documents_folder"] as? String == "CaseHug")
            #expect(settings["location"] is NSNull)
            let put = fixture.call(
                "PUT", user: fixture.admin, body: #"{"documents_folder": "  Client Uploads  ", "location": " nsw "}"#)
            #expect(put.status.code == 200)
            settings = try #require(try Self.json(put)["settings"] as? [String: Any])
            #expect(settings["documents_folder"] as? String == "Client Uploads")
            #expect(settings["location"] as? String == "NSW")
            // PATCH leaves what it does not name; a null location goes back to the firm's state.
            let patch = fixture.call("PATCH", user: fixture.admin, body: #"{"location": null}"#)
            #expect(patch.status.code == 200)
            settings = try #require(
                try Self.json(fixture.call("GET", user: fixture.standard))["settings"] as? [String: Any])
            #expect(settings["documents_folder"] as? String == "Client Uploads")
            #expect(settings["location"] is NSNull)
            // PUT replaces: a folder left out is the default again.
            _ = fixture.call("PUT", user: fixture.admin, body: #"{"location": "IL"}"#)
            settings = try #require(
                try Self.json(fixture.call("GET", user: fixture.admin))["settings"] as? [String: Any])
            #expect(settings["documents_folder"] as? String == "CaseHug")
            #expect(settings["location"] as? String == "IL")
        }
    }

    @Test func storedDocumentsFolderAndLocationOfTheWrongShapeReadAsTheirDefaults() {
        let read = IntegrationSettings(stored: ["documents_folder": "a/b", "location": "Illinois"])
        #expect(read.documentsFolder == "CaseHug")
        #expect(read.location == nil)
        let good = IntegrationSettings(stored: ["documents_folder": "Matter Files", "location": "ca"])
        #expect(good.documentsFolder == "Matter Files")
        #expect(good.location == "CA")
    }

    @Test func standardUsersCannotChangeSettings() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            _ = fixture.call("PUT", user: fixture.admin, body: #"{"auto_sync_on_approval": false}"#)
            let before = try fixture.seed.settingsJSON(firm: fixture.firm)
            for method in ["PUT", "PATCH"] {
                let response = fixture.call(method, user: fixture.standard, body: #"{"auto_sync_on_approval": true}"#)
                #expect(response.status.code == 403)
                #expect(try Self.errorCode(response) == "forbidden")
            }
            #expect(try fixture.seed.settingsJSON(firm: fixture.firm) == before)
        }
    }

    @Test(arguments: InvalidSettingsCase.fixtures)
    func invalidSettingsAreRejectedNamingTheFieldAndChangeNothing(_ invalid: InvalidSettingsCase) throws {
        let (body, field) = (invalid.body, invalid.field)
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            _ = fixture.call("PUT", user: fixture.admin, body: #"{"case_type_mappings": {"probate": "Probate"}}"#)
            let before = try fixture.seed.settingsJSON(firm: fixture.firm)
            let response = fixture.call("PUT", user: fixture.admin, body: body)
            #expect(response.status.code == 400)
            #expect(try Self.errorCode(response) == "invalid_setting")
            let message = (try Self.json(response)["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.hasPrefix(field + " "))
            #expect(try fixture.seed.settingsJSON(firm: fixture.firm) == before)
        }
    }

    @Test(arguments: [
        ("{not json", "application/json", 400, "invalid_json"),
        ("[1, 2]", "application/json", 400, "invalid_json"),
        ("", "application/json", 400, "invalid_json"),
        ("auto_sync_on_approval=false", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ])
    func malformedBodiesAreRejected(body: String, contentType: String, status: Int, code: String) throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let response = fixture.call("PATCH", user: fixture.admin, body: body, contentType: contentType)
            #expect(response.status.code == status)
            #expect(try Self.errorCode(response) == code)
            #expect(try fixture.seed.settingsJSON(firm: fixture.firm) == nil)
        }
    }

    @Test func usersWithoutAFirmAreForbiddenAndUnknownUsersUnauthorized() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let loner = try fixture.seed.user(firm: nil, role: "firm_admin")
            let forbidden = fixture.call("GET", user: loner)
            #expect(forbidden.status.code == 403)
            #expect(try Self.errorCode(forbidden) == "no_firm")
            let unknown = fixture.call("GET", user: UUID())
            #expect(unknown.status.code == 401)
            #expect(try Self.errorCode(unknown) == "unknown_user")
            let anonymous = fixture.call("GET", user: nil)
            #expect(anonymous.status.code == 401)
            #expect(anonymous.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
        }
    }

    @Test func otherMethodsAreNotAllowed() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let response = fixture.call("DELETE", user: fixture.admin)
            #expect(response.status.code == 405)
            #expect(response.header("Allow")?.contains("PATCH") == true)
        }
    }

    @Test func firmsOnlyEverSeeAndChangeTheirOwnSettings() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            let otherFirm = try fixture.seed.firm("Firm B")
            let otherAdmin = try fixture.seed.user(firm: otherFirm, role: "firm_admin")
            _ = fixture.call("PUT", user: fixture.admin, body: #"{"case_type_mappings": {"asylum": "A-only"}}"#)
            _ = fixture.call("PUT", user: otherAdmin, body: #"{"auto_sync_on_approval": false}"#)
            let mine = try #require(
                try Self.json(fixture.call("GET", user: fixture.admin))["settings"] as? [String: Any])
            let theirs = try #require(
                try Self.json(fixture.call("GET", user: otherAdmin))["settings"] as? [String: Any])
            #expect(mine["auto_sync_on_approval"] as? Bool == true)
            #expect(mine["case_type_mappings"] as? [String: String] == ["asylum": "A-only"])
            #expect(theirs["auto_sync_on_approval"] as? Bool == false)
            #expect((theirs["case_type_mappings"] as? [String: String])?.isEmpty == true)
            // One session serves both firms with prepared statements; past PostgreSQL's fifth
            // execution it switches to a generic plan, which must still see only the caller's firm.
            for _ in 0..<8 {
                for (user, firm) in [(fixture.admin, fixture.firm), (otherAdmin, otherFirm)] {
                    let answer = try Self.json(fixture.call("GET", user: user))
                    #expect(answer["firm_id"] as? String == firm.uuidString.lowercased())
                    let mappings = (answer["settings"] as? [String: Any])?["case_type_mappings"] as? [String: String]
                    #expect(mappings == (firm == fixture.firm ? ["asylum": "A-only"] : [:]))
                }
            }
        }
    }

    @Test func databaseOutageAnswers503WithRetryAfterAndRecovers() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            #expect(fixture.call("GET", user: fixture.admin).status.code == 200)
            try database.takeOffline()
            let down = fixture.call("PUT", user: fixture.admin, body: #"{"auto_sync_on_approval": false}"#)
            #expect(down.status.code == 503)
            #expect(down.header("Retry-After") == "5")
            #expect(try Self.errorCode(down) == "database_unavailable")
            try database.bringOnline()
            let up = fixture.call("GET", user: fixture.admin)
            #expect(up.status.code == 200)
            // The write attempted during the outage did not happen.
            let settings = try #require(try Self.json(up)["settings"] as? [String: Any])
            #expect(settings["auto_sync_on_approval"] as? Bool == true)
        }
    }
}

/// One rejected settings body and the field its error must name (`Fixtures/invalid-settings.json`).
struct InvalidSettingsCase: Decodable, Sendable, CustomTestStringConvertible {
    let body: String
    let field: String

    var testDescription: String { body }

    static let fixtures: [InvalidSettingsCase] = {
        guard let url = Bundle.module.url(forResource: "Fixtures/invalid-settings", withExtension: "json"),
            let data = try? Data(contentsOf: url),
            let cases = try? JSONDecoder().decode([InvalidSettingsCase].self, from: data), !cases.isEmpty
        else { fatalError("Fixtures/invalid-settings.json is missing or malformed") }
        return cases
    }()
}
