import Basics
import Cryptography
import Foundation
import HTTPClient
import PostgreSQL
import TestSupport
import Testing

/// The Smokeball sandbox as the service will meet it: its own executable with several worker
/// processes behind nginx on its own port, spoken to over HTTP with the project's libcurl client.
@Suite(.serialized) struct SandboxEndToEndTests {
    static let clientID = "e2e-client"
    static let clientSecret = "e2e-client-secret-value"
    static let apiKey = "e2e-api-key-value"
    static let redirectURI = "http://127.0.0.1:8080/api/v1/integrations/smokeball/callback"

    /// A database migrated with `migrations/sandbox`, dropped afterwards.
    /// The sandbox's own database, copied from a template migrated once per test process.
    struct SandboxStore {
        let name: String
        var url: String { TestEnvironment.databaseURL(TestEnvironment.adminURL, database: name) }

        init() throws {
            name = try TestCluster.createDatabase("sandbox_e2e_", template: "sandbox") { connection in
                let directory = URL(fileURLWithPath: TestEnvironment.migrationsDirectory).appendingPathComponent(
                    "sandbox")
                _ = try Migrator(directory: directory.path).apply(on: connection)
            }
        }

        func drop() { TestCluster.dropDatabase(name) }

        /// A matter of `accountID`, readable at once and without events (as if it predated the
        /// integration); its id.
        func insertMatter(accountID: String) throws -> UUID {
            let matter = UUID()
            try Connection(url: url).execute(
                """
                INSERT INTO sb_matters (id, account_id, version_id, matter_type_id, status, doc, created_at, updated_at,
                                        visible_at)
                SELECT $1, $2::uuid, $1, (SELECT id FROM sb_matter_types WHERE region = 'US' ORDER BY id LIMIT 1),
                       'Open', '{}'::jsonb, now(), now(), now()
                """, [matter, accountID])
            return matter
        }
    }

    /// The service's `status` route and the sandbox behind nginx, each with a fresh database,
    /// for `body`; everything is stopped and dropped afterwards.
    static func withRunningSandbox(
        workers: Int = 2, routes: [String] = ["status"],
        routeEnvironment: (_ baseURL: String, _ sandboxURL: String?) -> [String: String] = { _, _ in [:] },
        _ body: (RunningService, SandboxStore, ServiceDatabase) throws -> Void
    ) throws {
        let store = try SandboxStore()
        defer { store.drop() }
        let database = try ServiceDatabase.create()
        defer { database.drop() }
        let service = try RunningService(
            routes: routes, databaseURL: database.appURL, workers: workers, sandboxDatabaseURL: store.url,
            routeEnvironment: routeEnvironment)
        defer { service.stop() }
        try body(service, store, database)
    }

    /// What a test may need besides the running service.
    struct SandboxContext {
        let store: SandboxStore
        let accountID: String
    }

    static func withSandbox(rate: Double, burst: Double, _ body: (RunningService, SandboxContext) throws -> Void)
        throws
    {
        try withRunningSandbox(workers: 4) { service, store, _ in
            let client = try service.send(
                "POST", "/_sandbox/clients",
                body: json([
                    "client_id": clientID, "client_secret": clientSecret, "api_key": apiKey,
                    "redirect_uris": [redirectURI], "rate_per_second": rate, "burst": burst,
                ]), contentType: "application/json", base: service.sandboxURL)
            #expect(client.status == 201)
            let account = try service.send(
                "POST", "/_sandbox/accounts",
                body: json(["name": "E2E Firm", "users": [["email": "e2e@firm.test", "password": "e2e-password"]]]),
                contentType: "application/json", base: service.sandboxURL)
            #expect(account.status == 201)
            try body(service, SandboxContext(store: store, accountID: (account.jsonObject["id"] as? String) ?? ""))
        }
    }

    static func json(_ object: [String: Any]) -> [UInt8] {
        (try? JSONSerialization.data(withJSONObject: object)).map { [UInt8]($0) } ?? []
    }

    static func form(_ fields: [(String, String)]) -> [UInt8] {
        Array(FormURLEncoding.encode(fields).utf8)
    }

    @Test func aFirmConnectsThroughTheSandboxOverHTTP() throws {
        try Self.withSandbox(rate: 50, burst: 50) { service, _ in
            let verifier = SecureRandom.token(byteCount: 48)
            let challenge = Base64URL.encode(SHA256.hash(Array(verifier.utf8)))
            let authorizeURL = URLQuery.build(
                base: "/oauth2/authorize",
                [
                    ("response_type", "code"), ("client_id", Self.clientID), ("redirect_uri", Self.redirectURI),
                    ("state", "e2e-state"), ("code_challenge", challenge), ("code_challenge_method", "S256"),
                ])
            let page = try service.send("GET", authorizeURL, base: service.sandboxURL)
            #expect(page.status == 200)
            #expect(page.header("Content-Type")?.hasPrefix("text/html") == true)

            let signIn = try service.send(
                "POST", "/oauth2/authorize",
                body: Self.form([
                    ("response_type", "code"), ("client_id", Self.clientID), ("redirect_uri", Self.redirectURI),
                    ("state", "e2e-state"), ("code_challenge", challenge), ("code_challenge_method", "S256"),
                    ("username", "e2e@firm.test"), ("password", "e2e-password"), ("decision", "allow"),
                ]), contentType: "application/x-www-form-urlencoded", base: service.sandboxURL)
            #expect(signIn.status == 302)
            let location = try #require(signIn.header("Location").flatMap { URLComponents(string: $0) })
            let items = Dictionary(uniqueKeysWithValues: (location.queryItems ?? []).map { ($0.name, $0.value ?? "") })
            #expect(items["state"] == "e2e-state")
            let code = try #require(items["code"])

            let basic = "Basic " + Data("\(Self.clientID):\(Self.clientSecret)".utf8).base64EncodedString()
            let tokens = try service.send(
                "POST", "/oauth2/token", headers: [("Authorization", basic)],
                body: Self.form([
                    ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Self.redirectURI),
                    ("code_verifier", verifier),
                ]), contentType: "application/x-www-form-urlencoded", base: service.sandboxURL)
            #expect(tokens.status == 200)
            let access = try #require(tokens.jsonObject["access_token"] as? String)

            let types = try service.send(
                "GET", "/mattertypes?Limit=2", token: access,
                headers: [("x-api-key", Self.apiKey), ("RequestId", "e2e-req-1")], base: service.sandboxURL)
            #expect(types.status == 200)
            #expect(types.header("RequestId") == "e2e-req-1")
            #expect(types.jsonObject["limit"] as? Int == 2)

            // The admin paths are served to loopback callers through nginx.
            let log = try service.send("GET", "/_sandbox/requests", base: service.sandboxURL)
            let requests = log.jsonObject["requests"] as? [[String: Any]] ?? []
            // The token exchange is logged too, with its grant type and no RequestId.
            #expect(requests.map { $0["request_id"] as? String } == [nil, "e2e-req-1"])
            #expect(requests.map { $0["grant_type"] as? String } == ["authorization_code", nil])
        }
    }

    /// Eight clients flood four sandbox processes: the partner's bucket holds across processes,
    /// no refusal carries Retry-After (Smokeball's gateway sends none), and the request log has
    /// each request exactly once.
    @Test func theRateLimitHoldsAcrossSandboxProcesses() throws {
        let rate = 10.0
        let burst = 5.0
        try Self.withSandbox(rate: rate, burst: burst) { service, _ in
            let basic = "Basic " + Data("\(Self.clientID):\(Self.clientSecret)".utf8).base64EncodedString()
            let granted = try service.send(
                "POST", "/oauth2/token", headers: [("Authorization", basic)],
                body: Self.form([("grant_type", "client_credentials")]),
                contentType: "application/x-www-form-urlencoded", base: service.sandboxURL)
            let token = try #require(granted.jsonObject["access_token"] as? String)
            struct Tally {
                var statuses: [Int] = []
                var withRetryAfter = 0
            }
            let counts = Locked(Tally())
            let duration: TimeInterval = 2
            let started = Date()
            let url = service.sandboxURL + "/mattertypes"
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                guard let client = try? HTTPClient() else { return }
                while Date().timeIntervalSince(started) < duration {
                    // No account in the path: answered 404 after the rate limit, which is enough here.
                    let request = HTTPRequest(
                        url: url, headers: [("x-api-key", Self.apiKey), ("Authorization", "Bearer " + token)],
                        timeout: 10)
                    guard let response = try? client.send(request) else { continue }
                    let retryAfter = response.status == 429 && response.header("Retry-After") != nil
                    counts.withLock { tally in
                        tally.statuses.append(response.status)
                        if retryAfter { tally.withRetryAfter += 1 }
                    }
                }
            }
            let elapsed = Date().timeIntervalSince(started)
            let tally = counts.value
            let admitted = tally.statuses.filter { $0 != 429 }.count
            // The figure, for the record (not a timing assertion).
            print(
                "flood (8 clients, 4 sandbox processes behind nginx): admitted \(admitted) of "
                    + "\(tally.statuses.count) in \(String(format: "%.2f", elapsed)) s; bound rate × T + burst = "
                    + "\(String(format: "%.1f", rate * elapsed + burst))")
            #expect(Double(admitted) <= rate * elapsed + burst)
            #expect(Double(admitted) >= rate * duration * 0.5)
            #expect(tally.statuses.contains(429))
            #expect(tally.withRetryAfter == 0)
            let log = try service.send("GET", "/_sandbox/requests?path=/mattertypes", base: service.sandboxURL)
            let logged = (log.jsonObject["requests"] as? [[String: Any]] ?? []).compactMap { $0["status"] as? Int }
            #expect(logged.sorted() == tally.statuses.sorted())
        }
    }

    /// A dropped connection is a worker dying mid-request: nginx answers 502, the supervisor
    /// replaces the worker, and the sandbox keeps answering.
    @Test func anInjectedDroppedConnectionIs502AndTheSandboxRecovers() throws {
        try Self.withSandbox(rate: 100, burst: 100) { service, _ in
            let added = try service.send(
                "POST", "/_sandbox/faults", body: Self.json(["path_prefix": "/firm", "drop_connection": true]),
                contentType: "application/json", base: service.sandboxURL)
            #expect(added.status == 201)
            let headers = [("x-api-key", Self.apiKey), ("Authorization", "Bearer unknown"), ("RequestId", "dropped")]
            let dropped = try service.send("GET", "/firm", headers: headers, base: service.sandboxURL)
            #expect(dropped.status == 502)
            Self.expectProblemDetails(dropped, status: 502)
            let cleared = try service.send("DELETE", "/_sandbox/faults", base: service.sandboxURL)
            #expect(cleared.status == 204)
            var answered: HTTPResponse?
            try Processes.waitFor("the sandbox to answer again") {
                answered = try? service.send("GET", "/firm", headers: headers, base: service.sandboxURL)
                return answered?.status == 401
            }
            let log = try service.send("GET", "/_sandbox/requests", base: service.sandboxURL)
            let statuses = (log.jsonObject["requests"] as? [[String: Any]] ?? []).map { $0["status"] as? Int }
            #expect(statuses.first == 0)
            #expect(statuses.last == 401)

            // The auth server drops connections the same way.
            _ = try service.send(
                "POST", "/_sandbox/faults", body: Self.json(["path_prefix": "/oauth2/token", "drop_connection": true]),
                contentType: "application/json", base: service.sandboxURL)
            let form = Self.form([("grant_type", "client_credentials")])
            let token = try service.send(
                "POST", "/oauth2/token", body: form, contentType: "application/x-www-form-urlencoded",
                base: service.sandboxURL)
            #expect(token.status == 502)
            Self.expectProblemDetails(token, status: 502)
            _ = try service.send("DELETE", "/_sandbox/faults", base: service.sandboxURL)
            try Processes.waitFor("the token endpoint to answer again") {
                let answer = try? service.send(
                    "POST", "/oauth2/token", body: form, contentType: "application/x-www-form-urlencoded",
                    base: service.sandboxURL)
                return answer?.status == 401
            }
        }
    }

    /// What the sandbox's nginx answers itself — here a body over its 64 MiB limit — is
    /// ProblemDetails like every other sandbox refusal, not nginx's HTML page.
    @Test func nginxOwnRefusalsAreProblemDetails() throws {
        try Self.withSandbox(rate: 100, burst: 100) { service, _ in
            let big = [UInt8](repeating: UInt8(ascii: "a"), count: (64 << 20) + 1)
            let refused = try service.send(
                "PUT", "/_uploads/anything", body: big, contentType: "application/octet-stream",
                base: service.sandboxURL)
            #expect(refused.status == 413)
            Self.expectProblemDetails(refused, status: 413)
        }
    }

    /// The answer is `application/problem+json` and its body valid against the spec's
    /// ProblemDetails schema (read from the copy the sandbox tests validate against).
    static func expectProblemDetails(_ response: HTTPResponse, status: Int) {
        #expect(response.header("Content-Type") == "application/problem+json")
        let specURL = TestEnvironment.repositoryRoot.appendingPathComponent(
            "Tests/SandboxTests/Fixtures/smokeball-swagger.json")
        let spec = (try? JSONSerialization.jsonObject(with: Data(contentsOf: specURL))) as? [String: Any]
        let schema = ((spec?["components"] as? [String: Any])?["schemas"] as? [String: Any])?["ProblemDetails"]
        let properties = (schema as? [String: Any])?["properties"] as? [String: [String: Any]] ?? [:]
        #expect(properties.count == 5)
        let body = response.jsonObject
        for (name, property) in properties {
            let value = body[name]
            switch property["type"] as? String {
            case "string": #expect((value as? String) != nil, "\(name)")
            case "integer": #expect((value as? Int) != nil, "\(name)")
            default: Issue.record("unexpected type for \(name)")
            }
        }
        #expect(body["status"] as? Int == status)
    }

    /// The code flow, condensed: the access token of the sandbox's demo user.
    static func connect(_ service: RunningService) throws -> String {
        let fields: [(String, String)] = [
            ("response_type", "code"), ("client_id", clientID), ("redirect_uri", redirectURI),
            ("username", "e2e@firm.test"), ("password", "e2e-password"), ("decision", "allow"),
        ]
        let signIn = try service.send(
            "POST", "/oauth2/authorize", body: form(fields), contentType: "application/x-www-form-urlencoded",
            base: service.sandboxURL)
        let location = URLComponents(string: signIn.header("Location") ?? "")
        let code = location?.queryItems?.first { $0.name == "code" }?.value ?? ""
        let basic = "Basic " + Data("\(clientID):\(clientSecret)".utf8).base64EncodedString()
        let tokens = try service.send(
            "POST", "/oauth2/token", headers: [("Authorization", basic)],
            body: form([("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI)]),
            contentType: "application/x-www-form-urlencoded", base: service.sandboxURL)
        return (tokens.jsonObject["access_token"] as? String) ?? ""
    }

    /// Two megabytes through nginx to the upload URL: larger than the routes' 1 MiB limit, which
    /// the sandbox raises for uploads, and stored byte for byte. Like S3 with Smokeball's
    /// pre-signed URLs, a PUT with a Content-Type is refused and stores nothing: libcurl adds
    /// one to a body unless the request sends an empty one.
    @Test func aLargeFileUploadsThroughNginx() throws {
        try Self.withSandbox(rate: 100, burst: 100) { service, sandbox in
            let access = try Self.connect(service)
            let matter = try sandbox.store.insertMatter(accountID: sandbox.accountID)
            let added = try service.send(
                "POST", "/matters/\(matter.uuidString.lowercased())/documents/files", token: access,
                headers: [("x-api-key", Self.apiKey)], body: Self.json(["fileName": "scan.pdf"]),
                contentType: "application/json", base: service.sandboxURL)
            #expect(added.status == 202)
            let uploadURL = try #require(added.jsonObject["uploadUrl"] as? String)
            #expect(uploadURL.hasPrefix(service.sandboxURL + "/_uploads/"))
            let bytes = (0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let client = try HTTPClient()
            func storedBytes() throws -> Int64 {
                try Connection(url: sandbox.store.url).execute(
                    "SELECT coalesce(sum(octet_length(content)), 0) AS n FROM sb_files WHERE matter_id = $1", [matter]
                ).single().int("n")
            }
            for headers in [[], [("Content-Type", "application/pdf")]] as [[(String, String)]] {
                let refused = try client.send(
                    HTTPRequest(method: "PUT", url: uploadURL, headers: headers, body: bytes, timeout: 30))
                #expect(refused.status == 403)
                #expect(refused.header("Content-Type") == "application/xml")
                #expect(String(decoding: refused.body, as: UTF8.self).contains("<Code>SignatureDoesNotMatch</Code>"))
                #expect(try storedBytes() == 0)
            }
            let put = try client.send(
                HTTPRequest(method: "PUT", url: uploadURL, headers: [("Content-Type", "")], body: bytes, timeout: 30))
            #expect(put.status == 200)
            let stored = try Connection(url: sandbox.store.url).execute(
                "SELECT content FROM sb_files WHERE matter_id = $1", [matter]
            ).single().bytes("content")
            #expect(stored == bytes)
        }
    }
}
