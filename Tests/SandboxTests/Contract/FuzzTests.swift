import Basics
import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import SmokeballSandbox

/// A seeded fuzz of the sandbox's request parsing: malformed and non-object JSON, wrong content
/// types, junk query strings and path ids against contacts, matters, webhooks, documents and the
/// token endpoint. Every refusal must be a 4xx in the caller's error shape (ProblemDetails, or
/// OAuth's JSON error at /oauth2/token), never a 5xx, and must create nothing. The seed is fixed
/// (`SANDBOX_FUZZ_SEED` overrides it) and named in every failure, so a failure replays exactly.
@Suite struct FuzzTests {
    typealias F = SandboxFixture

    static let seed: UInt64 =
        SeededGenerator.seed(environment: "SANDBOX_FUZZ_SEED", default: 0x5EED_2026_0003)
    static let cases = 400

    typealias Generator = SeededGenerator

    // MARK: Junk

    static let junkPieces = [
        "", " ", "-1", "0", "501", "2147483648", "-2147483649", "99999999999999999999999999", "1e309", "NaN",
        "null", "true", "%", "%zz", "%00", "%FF%FE", "%E2%82", "%2F..%2F", "ü", "名前", "🦀", "\u{202E}", "\u{0}",
        "' OR 1=1 --", "*", "**", "name:", "email:!*", "phone:>=", "name:*%_\\", "\\", "../..", "+", "&", "=",
        "0x1F", "2024-13-45T99:99:99Z", "638000000000000000", "Open,Nope", "Matters,Leads,Cats", "{}", "[]",
    ]

    static func junk(_ random: inout Generator) -> String {
        var text = ""
        for _ in 0..<Int.random(in: 1...3, using: &random) {
            switch Int.random(in: 0..<10, using: &random) {
            case 0:
                text += String(
                    repeating: random.pick(["a", "9", "%", "ü"]), count: Int.random(in: 100...5000, using: &random))
            case 1:
                text += String(
                    (0..<Int.random(in: 1...12, using: &random)).map { _ in
                        Character(Unicode.Scalar(UInt8.random(in: 0x20...0x7E, using: &random)))
                    })
            case 2:
                let scalars = (0..<Int.random(in: 1...6, using: &random)).compactMap { _ in
                    Unicode.Scalar(UInt32.random(in: 0x80...0x2_FFFF, using: &random))
                }
                text += String(String.UnicodeScalarView(scalars))
            default: text += random.pick(junkPieces)
            }
        }
        return text
    }

    /// A raw query string: known parameter names (in odd cases too) with junk, sometimes
    /// percent-encoded, sometimes raw; sometimes a bare or repeated name.
    static func query(_ random: inout Generator) -> String {
        let names = [
            "Offset", "Limit", "Search", "UpdatedSince", "LastUpdated", "Status", "Type", "IsLead", "Sort", "Fields",
            "ContactId", "MatterTypeId", "ExcludeDeletedContacts", "Name", "Location", "Category", "offset", "LIMIT",
        ]
        return (0..<Int.random(in: 1...5, using: &random)).map { _ in
            let name = random.pick(names)
            let value = junk(&random)
            switch Int.random(in: 0..<4, using: &random) {
            case 0: return name
            case 1: return name + "=" + value
            default: return name + "=" + PercentEncoding.encode(value)
            }
        }.joined(separator: random.pick(["&", "&&", ";"]))
    }

    /// A body that is never a JSON object: broken JSON, other JSON values, bytes that are not UTF-8.
    static func badJSON(_ random: inout Generator) -> [UInt8] {
        switch Int.random(in: 0..<8, using: &random) {
        case 0:
            return Array(random.pick(["{", "{\"a\":", "[1,2", "{\"person\": {\"firstName\": \"x\"}", "nul", ""]).utf8)
        case 1: return Array(random.pick(["[]", "[1,\"a\",null]", "\"text\"", "42", "null", "true", "-0.0e-5"]).utf8)
        case 2:
            return (0..<Int.random(in: 1...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
        case 3: return [0xFF, 0xFE, 0x7B, 0x00, 0x22]
        case 4:
            let depth = Int.random(in: 100...3000, using: &random)
            return Array((String(repeating: "[", count: depth) + String(repeating: "]", count: depth)).utf8)
        case 5: return Array("{\"fileName\": 1e999999, \"name\": 1e400}x".utf8)
        case 6: return Array("[\(junkJSONString(&random))]".utf8)
        default: return Array(junk(&random).utf8)
        }
    }

    static func junkJSONString(_ random: inout Generator) -> String {
        let data = try? JSONSerialization.data(withJSONObject: [junk(&random)])
        return data.map { String(decoding: $0.dropFirst().dropLast(), as: UTF8.self) } ?? "\"\""
    }

    static let wrongContentTypes = [
        nil, "text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
        "image/png", "text/json", "json",
    ]

    // MARK: The fuzz

    struct Setup {
        let fixture: F
        let access: String
        let matter: String
        let contact: String
        /// A body every write endpoint would accept, were it sent as JSON.
        let validObject: [String: Any]
    }

    struct Case {
        let request: Request
        /// Reads may answer 200; everything else must be refused.
        let mayAnswerOK: Bool
        let oauth: Bool
        var description: String { "\(request.method) \(request.path)?\(request.queryString.prefix(200))" }
    }

    static func apiRequest(
        _ setup: Setup, _ random: inout Generator, method: String, path: String, query: String = "",
        contentType: String?, body: [UInt8]
    ) -> Request {
        var headers = ["host": "sandbox.test", "x-api-key": F.apiKey, "authorization": "Bearer " + setup.access]
        // Now and then the gate itself meets junk.
        if random.chance(0.05) { headers["x-api-key"] = junk(&random) }
        if random.chance(0.05) { headers["authorization"] = random.pick(["Bearer ", "Basic x", junk(&random)]) }
        if let contentType { headers["content-type"] = contentType }
        return Request(
            method: method, path: path, query: QueryString.dictionary(query), queryString: query, headers: headers,
            body: body, remoteAddress: "127.0.0.1", requestID: "fuzz")
    }

    static func makeCase(_ setup: Setup, _ random: inout Generator) -> Case {
        let m = setup.matter
        let c = setup.contact
        switch Int.random(in: 0..<4, using: &random) {
        case 0:
            // Junk queries on reads.
            let path = random.pick([
                "/contacts", "/matters", "/webhooks", "/mattertypes", "/staff", "/matters/\(m)/documents/files",
                "/matters/\(m)/documents/folders", "/webhooks/types",
            ])
            let request = apiRequest(
                setup, &random, method: "GET", path: path, query: query(&random), contentType: nil, body: [])
            return Case(request: request, mayAnswerOK: true, oauth: false)
        case 1:
            // Writes with a body that is not a JSON object, or a valid one under a wrong content type.
            let (method, path) = random.pick([
                ("POST", "/contacts"), ("PUT", "/contacts/\(c)"), ("POST", "/contacts/batch"), ("POST", "/matters"),
                ("PATCH", "/matters/\(m)"), ("PUT", "/matters/\(m)"), ("POST", "/webhooks"),
                ("POST", "/matters/\(m)/documents/files"), ("POST", "/matters/\(m)/documents/files/bulk"),
                ("POST", "/matters/\(m)/documents/folders"), ("POST", "/matters/\(m)/memos"),
            ])
            let body: [UInt8]
            let contentType: String?
            if random.chance(0.4) {
                let valid: Any = path.hasSuffix("/bulk") ? [setup.validObject] : setup.validObject
                body = F.jsonBytes(valid)
                contentType = random.pick(wrongContentTypes)
            } else {
                body = badJSON(&random)
                contentType = random.pick([
                    "application/json", "application/json; charset=utf-8", "application/problem+json",
                ])
            }
            let request = apiRequest(
                setup, &random, method: method, path: path, query: random.chance(0.3) ? query(&random) : "",
                contentType: contentType, body: body)
            return Case(request: request, mayAnswerOK: false, oauth: false)
        case 2:
            // Junk where an id goes; the body is an empty JSON object.
            let id = random.chance(0.3) ? random.uuid() : junk(&random)
            let template = random.pick([
                "/contacts/#", "/matters/#", "/webhooks/#", "/staff/#", "/matters/#/documents/files",
                "/matters/\(m)/documents/files/#", "/matters/\(m)/documents/folders/#", "/matters/\(m)/memos/#",
                "/matters/#/documents/files/#/download", "/#/contacts",
            ])
            let path = template.replacingOccurrences(of: "#", with: id)
            let method = random.pick(["GET", "PUT", "PATCH", "DELETE", "POST"])
            let request = apiRequest(
                setup, &random, method: method, path: path, contentType: "application/json", body: Array("{}".utf8))
            return Case(request: request, mayAnswerOK: method == "GET", oauth: false)
        default:
            // The token endpoint: junk forms, grants, client authentication and content types.
            var fields: [(String, String)] = [
                (
                    "grant_type",
                    random.pick([
                        "authorization_code", "refresh_token", "client_credentials", "password", junk(&random),
                    ])
                )
            ]
            for name in ["code", "refresh_token", "redirect_uri", "code_verifier", "client_id", "scope"]
            where random.chance(0.4) {
                fields.append((name, random.chance(0.5) ? junk(&random) : ""))
            }
            var body = Array(
                fields.map { PercentEncoding.encode($0.0) + "=" + PercentEncoding.encode($0.1) }.joined(separator: "&")
                    .utf8)
            if random.chance(0.2) { body = badJSON(&random) }
            var headers = ["host": "sandbox.test"]
            if let type = random.pick(["application/x-www-form-urlencoded", "application/json", "text/plain", nil]) {
                headers["content-type"] = type
            }
            headers["authorization"] = random.pick([
                F.basic(F.clientID, "wrong-secret"), F.basic(junk(&random), junk(&random)), "Basic " + junk(&random),
                "Bearer " + setup.access, junk(&random),
            ])
            let request = Request(
                method: random.pick(["POST", "POST", "POST", "GET", "PUT"]), path: "/oauth2/token",
                query: [:], queryString: random.chance(0.2) ? query(&random) : "", headers: headers, body: body,
                remoteAddress: "127.0.0.1", requestID: "fuzz")
            return Case(request: request, mayAnswerOK: false, oauth: true)
        }
    }

    /// How many of each thing a request could create.
    static func counts(_ fixture: F) throws -> [String: Int64] {
        let tables = [
            "sb_contacts", "sb_matters", "sb_webhook_subscriptions", "sb_files", "sb_folders", "sb_memos",
            "sb_pending_updates", "sb_events", "sb_tokens", "sb_auth_codes", "sb_downloads",
        ]
        let connection = try Connection(url: fixture.databaseURL)
        var counts: [String: Int64] = [:]
        for table in tables {
            // Table names from the fixed list above, not from input.
            counts[table] = try connection.execute("SELECT count(*) AS n FROM \(table)").single().int("n")
        }
        return counts
    }

    @Test func malformedRequestsAreRefusedCleanlyAndCreateNothing() throws {
        let fixture = try F(rate: 1_000_000, burst: 1_000_000)
        let (access, _) = fixture.connect()
        let contact = try MattersTests.contact(fixture, "Fuzz Client")
        let type = try MattersTests.matterType(fixture, "Divorce")
        let matter = try DocumentsTests.matter(fixture)
        let setup = Setup(
            fixture: fixture, access: access, matter: matter, contact: contact,
            validObject: [
                "person": ["firstName": "Fuzz"], "fileName": "f.pdf", "name": "F", "title": "t", "text": "x",
                "matterTypeId": type, "clientIds": [contact], "status": "Open", "eventTypes": ["matter.created"],
                "eventNotificationUrl": "https://example.test/hook", "key": "k", "ids": [contact],
            ])
        let before = try Self.counts(fixture)
        let contactsBefore = F.json(fixture.api("GET", "/contacts", token: access))["size"] as? Int
        let spec = OpenAPIValidator.smokeball
        var random = Generator(seed: Self.seed)
        var tally: [Int: Int] = [:]
        for index in 0..<Self.cases {
            let fuzzCase = Self.makeCase(setup, &random)
            let response = respond(to: fuzzCase.request, with: fixture.handler, log: Logger(route: "sandbox-fuzz")).0
            let code = response.status.code
            tally[code, default: 0] += 1
            let where_ = "seed \(Self.seed) case \(index): \(fuzzCase.description) → \(code)"
            let refused = (400..<500).contains(code)
            #expect(refused || (fuzzCase.mayAnswerOK && code == 200), "\(where_) \(F.text(response).prefix(300))")
            let body = try? JSONSerialization.jsonObject(with: Data(response.body))
            if fuzzCase.oauth {
                #expect((body as? [String: Any])?["error"] is String, "\(where_): not an OAuth error")
            } else if refused {
                #expect(response.header("Content-Type") == "application/problem+json", "\(where_)")
                #expect(spec.problems(body ?? "", schema: "ProblemDetails") == [], "\(where_)")
                #expect((body as? [String: Any])?["status"] as? Int == code, "\(where_)")
            } else {
                #expect(body != nil, "\(where_): a 200 that is not JSON")
            }
        }
        // Every kind of answer was met, so the fuzz reached past the gate.
        #expect(tally[200, default: 0] > 0 && tally[400, default: 0] > 0 && tally[404, default: 0] > 0, "\(tally)")
        #expect(tally[415, default: 0] > 0, "\(tally)")

        #expect(try Self.counts(fixture) == before, "seed \(Self.seed): a refused request created something")
        #expect(F.json(fixture.api("GET", "/contacts", token: access))["size"] as? Int == contactsBefore)
        let counters = F.json(fixture.admin("GET", "/_sandbox/counters"))
        let statuses = (counters["by_status"] as? [String: Int] ?? [:]).keys.compactMap { Int($0) }
        #expect(statuses.allSatisfy { $0 < 500 }, "seed \(Self.seed): \(statuses)")
        // And the sandbox still does its normal work.
        let created = fixture.write(
            "POST", "/contacts", token: access,
            body: F.jsonBytes(["person": ["firstName": "After", "lastName": "Fuzz"]]),
            requestID: "after-fuzz")
        #expect(created.status == .accepted)
        #expect(fixture.api("GET", "/matters/\(matter)", token: access).status == .ok)
    }
}
