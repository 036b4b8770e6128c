import Basics
import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import SmokeballSandbox

/// A migrated sandbox database per test (copied from a template migrated once per process),
/// one registered partner and one firm account with a sign-in user, and helpers that call the
/// sandbox handler the way nginx would.
final class SandboxFixture: @unchecked Sendable {
    static var adminURL: String { TestCluster.adminURL }
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let migrations = repositoryRoot.appendingPathComponent("migrations/sandbox").path

    static let clientID = "casehug-test-client"
    static let clientSecret = "test-client-secret-0123456789"
    static let apiKey = "test-api-key-abcdefghijklmnop"
    static let redirectURI = "http://127.0.0.1:8080/api/v1/integrations/smokeball/callback"
    static let email = "owner@sandbox-firm.test"
    static let password = "correct horse battery staple"

    let databaseName: String
    let databaseURL: String
    let database: Database
    private let clockLock = NSLock()
    private var offset: TimeInterval = 0
    private(set) var accountID = UUID()

    var now: Date {
        clockLock.lock()
        defer { clockLock.unlock() }
        return Date().addingTimeInterval(offset)
    }

    /// Moves the sandbox's clock (codes, tokens) forward; the rate limiter uses the database clock.
    func advance(by seconds: TimeInterval) {
        clockLock.lock()
        offset += seconds
        clockLock.unlock()
    }

    var handler: SandboxHandler { SandboxHandler(database: database, clock: { [unowned self] in self.now }) }

    static func url(for database: String) -> String { TestCluster.url(forDatabase: database) }

    init(
        rate: Double = 5, burst: Double = 5, accessTTL: Int = 3600, refreshTTL: Int = 2_592_000,
        retryAfterHeader: Bool = false
    ) throws {
        databaseName = try TestCluster.createDatabase("sandbox_", template: "sandbox") { connection in
            _ = try Migrator(directory: Self.migrations).apply(on: connection)
        }
        databaseURL = Self.url(for: databaseName)
        database = Database(url: databaseURL, options: .direct)
        let client = admin(
            "POST", "/_sandbox/clients",
            [
                "client_id": Self.clientID, "client_secret": Self.clientSecret, "api_key": Self.apiKey,
                "redirect_uris": [Self.redirectURI], "rate_per_second": rate, "burst": burst,
                "access_ttl_seconds": accessTTL, "refresh_ttl_seconds": refreshTTL,
                "retry_after_header": retryAfterHeader,
            ])
        #expect(client.status.code == 201)
        let account = admin(
            "POST", "/_sandbox/accounts",
            ["name": "Sandbox Firm", "region": "US", "users": [["email": Self.email, "password": Self.password]]])
        #expect(account.status.code == 201)
        accountID = UUID(uuidString: (Self.json(account)["id"] as? String) ?? "") ?? UUID()
    }

    deinit {
        database.disconnect()
        TestCluster.dropDatabase(databaseName)
    }

    // MARK: Calling the handler

    func call(
        _ method: String, _ path: String, query: [String: String] = [:], headers: [String: String] = [:],
        body: [UInt8] = []
    ) -> Response {
        var all = ["host": "sandbox.test"]
        for (name, value) in headers { all[name.lowercased()] = value }
        let request = Request(
            method: method, path: path, query: query, headers: all, body: body, remoteAddress: "127.0.0.1",
            requestID: "test")
        return respond(to: request, with: handler, log: Logger(route: "sandbox-test")).0
    }

    /// A request to a URL the sandbox handed out (upload and download URLs): its path and query.
    func call(_ method: String, url: String, headers: [String: String] = [:], body: [UInt8] = []) -> Response {
        let components = URLComponents(string: url)
        var query: [String: String] = [:]
        for item in components?.queryItems ?? [] { query[item.name] = item.value ?? "" }
        return call(method, components?.path ?? url, query: query, headers: headers, body: body)
    }

    func admin(_ method: String, _ path: String, _ body: [String: Any]? = nil) -> Response {
        call(
            method, path, headers: body == nil ? [:] : ["content-type": "application/json"],
            body: body.map(Self.jsonBytes) ?? [])
    }

    /// An API write as the integration sends it: key, token, JSON content type and a RequestId.
    func write(_ method: String, _ path: String, token: String, body: [UInt8], requestID: String) -> Response {
        call(
            method, path,
            headers: [
                "x-api-key": Self.apiKey, "authorization": "Bearer " + token, "content-type": "application/json",
                "requestid": requestID,
            ], body: body)
    }

    static func jsonBytes(_ object: Any) -> [UInt8] {
        (try? JSONSerialization.data(withJSONObject: object)).map { [UInt8]($0) } ?? []
    }

    static func form(_ fields: [(String, String)]) -> [UInt8] {
        Array(
            fields.map { "\(PercentEncoding.encode($0.0))=\(PercentEncoding.encode($0.1))" }.joined(separator: "&").utf8
        )
    }

    static func basic(_ id: String = clientID, _ secret: String = clientSecret) -> String {
        "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString()
    }

    func token(_ fields: [(String, String)], authorization: String? = SandboxFixture.basic()) -> Response {
        var headers = ["content-type": "application/x-www-form-urlencoded"]
        if let authorization { headers["authorization"] = authorization }
        return call("POST", "/oauth2/token", headers: headers, body: Self.form(fields))
    }

    /// Signs the user in at the authorize endpoint; returns the redirect's query items.
    func authorize(state: String = "state-1", challenge: String? = nil, password: String = SandboxFixture.password)
        -> (Response, [String: String])
    {
        var fields = [
            ("response_type", "code"), ("client_id", Self.clientID), ("redirect_uri", Self.redirectURI),
            ("state", state), ("username", Self.email), ("password", password), ("decision", "allow"),
        ]
        if let challenge { fields += [("code_challenge", challenge), ("code_challenge_method", "S256")] }
        let response = call(
            "POST", "/oauth2/authorize", headers: ["content-type": "application/x-www-form-urlencoded"],
            body: Self.form(fields))
        return (response, Self.redirectQuery(response))
    }

    static func redirectQuery(_ response: Response) -> [String: String] {
        guard let location = response.header("Location"), let components = URLComponents(string: location) else {
            return [:]
        }
        var items: [String: String] = [:]
        for item in components.queryItems ?? [] { items[item.name] = item.value ?? "" }
        return items
    }

    /// The code flow end to end: access and refresh tokens.
    func connect(verifier: String = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") -> (access: String, refresh: String)
    {
        let (_, query) = authorize(challenge: Secrets.s256Challenge(verifier: verifier))
        let response = token([
            ("grant_type", "authorization_code"), ("code", query["code"] ?? ""), ("redirect_uri", Self.redirectURI),
            ("code_verifier", verifier),
        ])
        let body = Self.json(response)
        return ((body["access_token"] as? String) ?? "", (body["refresh_token"] as? String) ?? "")
    }

    func api(
        _ method: String, _ path: String, token: String?, apiKey: String? = SandboxFixture.apiKey,
        query: [String: String] = [:], requestID: String? = nil
    ) -> Response {
        var headers: [String: String] = [:]
        if let token { headers["authorization"] = "Bearer " + token }
        if let apiKey { headers["x-api-key"] = apiKey }
        if let requestID { headers["requestid"] = requestID }
        return call(method, path, query: query, headers: headers)
    }

    static func json(_ response: Response) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
    }

    static func text(_ response: Response) -> String { String(decoding: response.body, as: UTF8.self) }

    // MARK: Recorded events

    /// A row of `sb_events`, as tests assert on it.
    struct RecordedEvent {
        let type: String
        let source: String
        let requestID: String?
        let clientID: String?
        /// The acting user (the notification's `userId`), lower-case.
        let userID: String?
        let payload: [String: Any]
    }

    /// Every event recorded so far, oldest first.
    func events() throws -> [RecordedEvent] {
        try Connection(url: databaseURL).execute(
            """
            SELECT type, source, request_id, client_id, user_id::text AS user_id, payload::text AS payload
            FROM sb_events ORDER BY id
            """
        ).rows.map { row in
            RecordedEvent(
                type: try row.string("type"), source: try row.string("source"),
                requestID: try row.optionalString("request_id"), clientID: try row.optionalString("client_id"),
                userID: try row.optionalString("user_id"),
                payload: (try JSONSerialization.jsonObject(with: Data(try row.string("payload").utf8)))
                    as? [String: Any] ?? [:])
        }
    }
}
