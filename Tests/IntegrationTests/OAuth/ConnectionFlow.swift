import Basics
import Cryptography
import FastCGI
import Foundation
import HTTPClient
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

/// The connect, callback and disconnect handlers against the real sandbox (behind nginx) and a
/// real CaseHug database, called without sockets: a firm with an admin and a standard user, a
/// second firm with its own admin, and the partner registered at the sandbox.
struct ConnectionFlow {
    static let key = SecureRandom.bytes(32)
    static let redirects = OAuthRedirects(
        redirectURI: SmokeballSandbox.redirectURI, returnURL: "https://casehug.test/settings/integrations",
        webhookURL: "https://casehug.test/api/v1/integrations/smokeball/webhooks")

    let sandbox: SmokeballSandbox
    let seed: Seed
    let firm: Seed.FirmWithUsers
    let otherFirm: Seed.FirmWithUsers
    let vault: TokenVault
    let database: Database
    let smokeball: SmokeballConfiguration
    let connect: ConnectHandler
    var callback: CallbackHandler
    let tokens: SmokeballTokenProvider
    let disconnect: DisconnectHandler

    init(_ sandbox: SmokeballSandbox, configured: Bool = true) throws {
        self.sandbox = sandbox
        seed = try Seed(sandbox.database)
        firm = try seed.firmWithUsers("Firm A")
        otherFirm = try seed.firmWithUsers("Firm B")
        vault = try TokenVault(key: Self.key)
        database = Database(url: sandbox.database.appURL)
        var smokeball = try sandbox.configuration()
        if !configured { smokeball.credentials = nil }
        self.smokeball = smokeball
        let authenticator = Authenticator(secret: Array(TestEnvironment.jwtSecret.utf8))
        connect = ConnectHandler(
            authenticator: authenticator, database: database, smokeball: try sandbox.configuration(), vault: vault,
            redirects: Self.redirects)
        callback = CallbackHandler(
            authenticator: authenticator, database: database, smokeball: smokeball, vault: vault,
            redirects: Self.redirects,
            rateLimit: PartnerRateLimit(
                database: database, configuration: smokeball, clientID: SmokeballSandbox.clientID))
        callback.retryPolicy = RetryPolicy(maxAttempts: 2, baseDelay: 0.01, maxDelay: 0.02)
        tokens = SmokeballTokenProvider(
            database: database, vault: vault, smokeball: try sandbox.configuration(),
            rateLimit: PartnerRateLimit(
                database: database, configuration: smokeball, clientID: SmokeballSandbox.clientID))
        disconnect = DisconnectHandler(
            authenticator: authenticator, database: database, tokens: configured ? tokens : nil,
            subscriptions: callback.subscriptions)
    }

    static func with(configured: Bool = true, _ body: (inout ConnectionFlow) throws -> Void) throws {
        try SmokeballSandbox.with { sandbox in
            var flow = try ConnectionFlow(sandbox, configured: configured)
            try body(&flow)
        }
    }

    // MARK: Requests

    static func request(
        _ method: String = "GET", route: String, query: [(String, String)] = [], user: UUID? = nil,
        cookieUser: UUID? = nil, accept: String? = nil
    ) -> Request {
        var headers: [String: String] = [:]
        if let user { headers["authorization"] = "Bearer " + TestEnvironment.token(subject: user.uuidString) }
        if let cookieUser {
            headers["cookie"] = "casehug_session=" + TestEnvironment.token(subject: cookieUser.uuidString)
        }
        if let accept { headers["accept"] = accept }
        let queryString = FormURLEncoding.encode(query)
        return Request(
            method: method, path: "/api/v1/integrations/smokeball/" + route,
            query: QueryString.dictionary(queryString), queryString: queryString, headers: headers, body: [],
            requestID: "test")
    }

    /// The admin starts connecting: the authorize URL from the connect route.
    func start(as user: UUID? = nil) throws -> String {
        let response = respond(
            to: Self.request(route: "connect", user: user ?? firm.admin, accept: "application/json"), with: connect,
            log: Logger(route: "connect")
        ).0
        try #require(response.status.code == 200)
        let body = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        return try #require(body["authorize_url"] as? String)
    }

    /// The query of an authorize URL.
    static func parameters(_ url: String) -> [String: String] {
        QueryString.dictionary(url.split(separator: "?", maxSplits: 1).last ?? "")
    }

    /// Start, sign in at the sandbox: what Smokeball sends the browser back with.
    func signedIn(as user: UUID? = nil, decision: String = "allow") throws -> [String: String] {
        try sandbox.signIn(authorizeURL: try start(as: user), decision: decision)
    }

    /// The browser arriving at the callback.
    func arrive(_ query: [(String, String)], cookieUser: UUID? = nil) -> Response {
        respond(
            to: Self.request(route: "callback", query: query, cookieUser: cookieUser), with: callback,
            log: Logger(route: "callback")
        ).0
    }

    func arrive(_ items: [String: String], cookieUser: UUID? = nil) -> Response {
        arrive(items.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, cookieUser: cookieUser)
    }

    /// `POST disconnect` as `user` (Bearer): the status and the JSON answer.
    func disconnect(as user: UUID? = nil) throws -> (status: Int, body: [String: Any]) {
        let response = respond(
            to: Self.request("POST", route: "disconnect", user: user ?? firm.admin), with: disconnect,
            log: Logger(route: "disconnect")
        ).0
        let body = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
        return (response.status.code, body)
    }

    /// The whole flow for `user`: connect, sign in, callback.
    @discardableResult
    func connectFirm(as user: UUID? = nil) throws -> Response {
        arrive(try signedIn(as: user), cookieUser: user ?? firm.admin)
    }

    /// Where a callback answer sends the browser: the return URL's query, after checking that it
    /// is the configured return URL and nothing else.
    static func landing(_ response: Response) throws -> [String: String] {
        #expect(response.status.code == 302)
        let location = try #require(response.header("Location"))
        try #require(location.hasPrefix(redirects.returnURL + "?"))
        return parameters(location)
    }

    // MARK: What was stored, at both ends

    struct StoredConnection {
        let accessToken: String
        let refreshToken: String
        let webhookKey: String
        let row: Row
    }

    /// The firm's row as stored, with the sealed values opened.
    func stored(_ firmID: UUID? = nil) throws -> StoredConnection? {
        let firmID = firmID ?? firm.id
        guard
            let row = try seed.connection.execute(
                """
                SELECT *, array_to_string(webhook_event_types, ',') AS types FROM firm_integrations
                WHERE firm_id = $1 AND platform = 'smokeball'
                """, [firmID]
            ).first
        else { return nil }
        func open(_ column: TokenVault.Column) throws -> String {
            guard let sealed = try row.optionalBytes(column.rawValue) else { return "" }
            return try vault.open(sealed, firmID: firmID, platform: "smokeball", column: column)
        }
        return StoredConnection(
            accessToken: try open(.accessToken), refreshToken: try open(.refreshToken),
            webhookKey: try open(.webhookSecret), row: row)
    }

    /// The partner's subscriptions at the sandbox for the account: id, url, key, types.
    func subscriptions() throws -> [(id: String, url: String, key: String?, types: [String])] {
        try Connection(url: sandbox.store.url).execute(
            """
            SELECT id::text AS id, url, key, array_to_string(event_types, ',') AS types
            FROM sb_webhook_subscriptions WHERE client_id = $1 ORDER BY created_at
            """, [SmokeballSandbox.clientID]
        ).rows.map {
            (
                try $0.string("id"), try $0.string("url"), try $0.optionalString("key"),
                try $0.string("types").split(separator: ",").map(String.init)
            )
        }
    }

    /// Whether the sandbox ever exchanged `code` (it marks a code used when it does).
    func codeWasExchanged(_ code: String) throws -> Bool {
        let digest = SHA256.hash(Array(code.utf8))
        return try Connection(url: sandbox.store.url).execute(
            "SELECT used_at IS NOT NULL AS used FROM sb_auth_codes WHERE code_sha256 = $1", [digest]
        ).single().bool("used")
    }

    /// Calls the partner made to the sandbox's token endpoint so far, whatever their outcome
    /// (the sandbox's request log).
    func tokenRequests() throws -> Int {
        try tokenCounters()["total"] as? Int ?? -1
    }

    /// Refreshes the partner asked the sandbox for so far (its request log).
    func refreshRequests() throws -> Int {
        (try tokenCounters()["by_grant_type"] as? [String: Any])?["refresh_token"] as? Int ?? 0
    }

    /// The sandbox's counters of the partner's token-endpoint calls.
    func tokenCounters() throws -> [String: Any] {
        let counters = try sandbox.service.send(
            "GET", "/_sandbox/counters?client_id=\(SmokeballSandbox.clientID)&path=/oauth2/token", base: sandbox.url)
        try #require(counters.status == 200)
        return counters.jsonObject
    }

    /// Tokens the sandbox has issued to the partner so far.
    func issuedTokens() throws -> Int64 {
        try Connection(url: sandbox.store.url).execute(
            "SELECT count(*)::bigint AS n FROM sb_tokens WHERE client_id = $1", [SmokeballSandbox.clientID]
        ).single().int("n")
    }
}
