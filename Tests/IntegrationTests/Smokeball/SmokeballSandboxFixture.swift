import Basics
import Foundation
import HTTPClient
import PostgreSQL
import Smokeball
import TestSupport
import Testing

/// The sandbox behind nginx with a registered partner and a firm account, and a CaseHug
/// database for the partner's rate-limit bucket: what the Smokeball client tests run against.
struct SmokeballSandbox {
    static let clientID = "client-tests"
    static let clientSecret = "client-tests-secret-value"
    static let apiKey = "client-tests-api-key-value"
    static let redirectURI = "http://127.0.0.1:8080/api/v1/integrations/smokeball/callback"
    static let email = "owner@client-tests.test"
    static let password = "client-tests-password"

    let service: RunningService
    let database: ServiceDatabase
    let store: SandboxEndToEndTests.SandboxStore
    let accountID: String
    var url: String { service.sandboxURL }

    /// Runs `body` with a fresh sandbox (partner rate and burst as given) and CaseHug database.
    /// `routes` run behind the service's nginx with `routeEnvironment`; the partner may also
    /// redirect to the service's own callback route.
    static func with(
        rate: Double = 100, burst: Double = 100, retryAfterHeader: Bool = false, workers: Int = 3,
        routes: [String] = ["status"],
        routeEnvironment: (_ baseURL: String, _ sandboxURL: String?) -> [String: String] = { _, _ in [:] },
        _ body: (SmokeballSandbox) throws -> Void
    ) throws {
        try SandboxEndToEndTests.withRunningSandbox(
            workers: workers, routes: routes, routeEnvironment: routeEnvironment
        ) { service, store, database in
            let client = try service.send(
                "POST", "/_sandbox/clients",
                body: json([
                    "client_id": clientID, "client_secret": clientSecret, "api_key": apiKey,
                    "redirect_uris": [redirectURI, service.baseURL + "/api/v1/integrations/smokeball/callback"],
                    "rate_per_second": rate, "burst": burst,
                    "retry_after_header": retryAfterHeader,
                ]), contentType: "application/json", base: service.sandboxURL)
            try #require(client.status == 201)
            let account = try service.send(
                "POST", "/_sandbox/accounts",
                body: json([
                    "name": "Client Tests Law", "region": "US",
                    "users": [
                        ["email": email, "password": password, "first_name": "Olive", "last_name": "Owner"],
                        ["email": "second@client-tests.test", "password": "second-password", "first_name": "Sam"],
                    ],
                ]), contentType: "application/json", base: service.sandboxURL)
            try #require(account.status == 201)
            let accountID = try #require(account.jsonObject["id"] as? String)
            try body(SmokeballSandbox(service: service, database: database, store: store, accountID: accountID))
        }
    }

    static func json(_ object: [String: Any]) -> [UInt8] {
        (try? JSONSerialization.data(withJSONObject: object)).map { [UInt8]($0) } ?? []
    }

    /// The settings `scripts/run` writes for the sandbox, plus `extra`.
    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        [
            "SMOKEBALL_CLIENT_ID": Self.clientID, "SMOKEBALL_CLIENT_SECRET": Self.clientSecret,
            "SMOKEBALL_API_KEY": Self.apiKey, "SMOKEBALL_AUTH_BASE_URL": url, "SMOKEBALL_API_BASE_URL": url,
        ].merging(extra) { $1 }
    }

    func configuration(_ extra: [String: String] = [:]) throws -> SmokeballConfiguration {
        try SmokeballConfiguration.fromEnvironment(environment(extra))
    }

    /// A client with quick back-off, taking tokens from the CaseHug database's shared bucket.
    func client(
        retry: RetryPolicy = RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.05),
        rateLimited: Bool = true
    ) throws -> SmokeballClient {
        let configuration = try configuration()
        let limit = PartnerRateLimit(
            database: Database(url: database.appURL), configuration: configuration, clientID: Self.clientID)
        return try SmokeballClient(
            configuration: configuration, rateLimit: rateLimited ? limit : nil, retryPolicy: retry)
    }

    /// The firm user signs in on the sandbox's authorize page the way a browser would: the
    /// client's authorize URL is served, then the form is posted with the same parameters.
    /// Returns the code from the redirect.
    func signIn(_ client: SmokeballClient, state: String, challenge: String) throws -> String {
        let authorizeURL = client.authorizeURL(redirectURI: Self.redirectURI, state: state, codeChallenge: challenge)
        let items = try signIn(authorizeURL: authorizeURL)
        #expect(items["state"] == state)
        return try #require(items["code"])
    }

    /// Serves an authorize URL's page and posts its form as the firm user would (`allow`) or
    /// declines (`deny`). Returns the query Smokeball sends the browser back with.
    func signIn(
        authorizeURL: String, email: String = Self.email, password: String = Self.password, decision: String = "allow",
        redirectTo serviceURL: String? = nil
    ) throws -> [String: String] {
        let redirectURI = serviceURL.map { $0 + "/api/v1/integrations/smokeball/callback" } ?? Self.redirectURI
        let page = try HTTPClient().send(HTTPRequest(url: authorizeURL))
        try #require(page.status == 200)
        let query = try #require(URLComponents(string: authorizeURL)?.percentEncodedQuery)
        let fields = QueryString.items(query) + [("username", email), ("password", password), ("decision", decision)]
        let signIn = try service.send(
            "POST", "/oauth2/authorize", body: Array(FormURLEncoding.encode(fields).utf8),
            contentType: "application/x-www-form-urlencoded", base: url)
        try #require(signIn.status == 302)
        let location = try #require(signIn.header("Location"))
        try #require(location.hasPrefix(redirectURI + "?"))
        return QueryString.dictionary(location.split(separator: "?", maxSplits: 1)[1])
    }

    /// A user token through the whole code flow.
    func userAccess(_ client: SmokeballClient) throws -> SmokeballAccess {
        let verifier = PKCE.verifier()
        let code = try signIn(client, state: "s-" + UUID().uuidString, challenge: PKCE.challenge(for: verifier))
        return .user(try client.exchangeCode(code, redirectURI: Self.redirectURI, codeVerifier: verifier).accessToken)
    }

    /// The sandbox's API request log.
    func requestLog() throws -> [[String: Any]] {
        let log = try service.send("GET", "/_sandbox/requests?client_id=" + Self.clientID, base: url)
        return log.jsonObject["requests"] as? [[String: Any]] ?? []
    }

    /// Log entries of one call (its RequestId is kept across retries).
    func attempts(_ requestID: String?) throws -> [[String: Any]] {
        try requestLog().filter { $0["request_id"] as? String == requestID }
    }

    /// Runs `processes` copies of `smokeball-flood` at once with `arguments` and `environment`,
    /// checks that each exits cleanly without failures, and returns the calls that succeeded.
    static func runFloods(processes: Int, arguments: [String], environment: [String: String]) throws -> Int {
        var running: [(Process, Pipe)] = []
        for _ in 0..<processes {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: TestEnvironment.binDirectory)
                .appendingPathComponent("smokeball-flood")
            process.arguments = arguments
            process.environment = environment
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            running.append((process, output))
        }
        var succeeded = 0
        for (process, output) in running {
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            let summary = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
            succeeded += summary["succeeded"] as? Int ?? 0
            #expect((summary["failures"] as? [String: Int] ?? [:]).isEmpty, "\(summary)")
        }
        return succeeded
    }

    func addFault(_ fault: [String: Any]) throws {
        let added = try service.send(
            "POST", "/_sandbox/faults", body: Self.json(fault.merging(["client_id": Self.clientID]) { $1 }),
            contentType: "application/json", base: url)
        try #require(added.status == 201)
    }

    func clearFaults() throws {
        _ = try service.send("DELETE", "/_sandbox/faults", base: url)
    }
}
