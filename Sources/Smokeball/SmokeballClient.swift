import Basics
import Cryptography
import Foundation
import HTTPClient

/// Who a call acts as: the firm user whose token it is (authorization code), or a firm account
/// named in the path with a client-credentials token (`/{accountId}/...`), optionally on behalf
/// of one of its users (`UserId`). Printing it shows no token.
public struct SmokeballAccess: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessToken: String
    public var accountID: String?
    public var actingUserID: String?

    public static func user(_ accessToken: String) -> SmokeballAccess {
        SmokeballAccess(accessToken: accessToken, accountID: nil, actingUserID: nil)
    }

    public static func account(_ accountID: String, accessToken: String, actingUserID: String? = nil)
        -> SmokeballAccess
    {
        SmokeballAccess(accessToken: accessToken, accountID: accountID, actingUserID: actingUserID)
    }

    public var description: String {
        "SmokeballAccess(account: \(accountID ?? "token's"), token: <redacted>)"
    }
    public var debugDescription: String { description }
}

/// An answer and the `RequestId` the call sent, for the caller to record.
public struct SmokeballResult<Value: Sendable>: Sendable {
    public var value: Value
    public var requestID: String
    public var status: Int
}

/// The Smokeball API client: OAuth (authorization code with PKCE, refresh, client credentials)
/// and the API calls the connection flow uses, over the project's libcurl `HTTPClient`.
///
/// Every API request carries `x-api-key`, `Authorization: Bearer`, and a fresh `RequestId`
/// (kept across the retries of one call and returned with the answer), and takes a token from
/// the partner's shared rate limit first. Not `Sendable`, like the `HTTPClient` it owns: one per
/// thread or process.
public final class SmokeballClient {
    public let configuration: SmokeballConfiguration
    public let credentials: SmokeballConfiguration.Credentials
    public let region: SmokeballRegion
    public let endpoints: SmokeballEndpoints
    public let rateLimit: PartnerRateLimit?
    public var retryPolicy: RetryPolicy
    public var connectTimeout: Double = 5
    public var requestTimeout: Double = 30
    /// Uploads to pre-signed URLs carry whole files.
    public var uploadTimeout: Double = 600
    /// Items per page when following a list (500: Smokeball's maximum and default).
    public var pageSize = 500

    private let http: HTTPClient

    /// Throws `notConfigured` when the server has no Smokeball credentials. `rateLimit` nil only
    /// for tools and tests that must not share the partner's budget.
    public init(
        configuration: SmokeballConfiguration, region: SmokeballRegion? = nil, rateLimit: PartnerRateLimit?,
        retryPolicy: RetryPolicy = .standard
    ) throws {
        guard let credentials = configuration.credentials else { throw SmokeballError(.notConfigured) }
        self.configuration = configuration
        self.credentials = credentials
        self.region = region ?? configuration.defaultRegion
        endpoints = configuration.endpoints(for: self.region)
        self.rateLimit = rateLimit
        self.retryPolicy = retryPolicy
        http = try HTTPClient()
    }

    // MARK: OAuth

    /// Where the browser goes to sign in (see `SmokeballEndpoints.authorizeURL`).
    public func authorizeURL(redirectURI: String, state: String, codeChallenge: String) -> String {
        endpoints.authorizeURL(
            clientID: credentials.clientID, redirectURI: redirectURI, state: state, codeChallenge: codeChallenge)
    }

    /// Exchanges an authorization code (single use: not retried once it may have reached the server).
    public func exchangeCode(_ code: String, redirectURI: String, codeVerifier: String) throws -> TokenResponse {
        try token(
            [
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI),
                ("client_id", credentials.clientID), ("code_verifier", codeVerifier),
            ], idempotent: false)
    }

    /// A new access token for a refresh token (the answer usually has no new refresh token).
    public func refresh(_ refreshToken: String) throws -> TokenResponse {
        try token([("grant_type", "refresh_token"), ("refresh_token", refreshToken)], idempotent: true)
    }

    /// A server-to-server token; calls with it name the account (`SmokeballAccess.account`).
    public func clientCredentials() throws -> TokenResponse {
        try token([("grant_type", "client_credentials")], idempotent: true)
    }

    private func token(_ form: [(String, String)], idempotent: Bool) throws -> TokenResponse {
        let basic = Data("\(credentials.clientID):\(credentials.clientSecret)".utf8).base64EncodedString()
        let request = HTTPRequest(
            method: "POST", url: endpoints.tokenURL,
            headers: [
                ("Authorization", "Basic " + basic), ("Content-Type", "application/x-www-form-urlencoded"),
                ("Accept", "application/json"),
            ],
            body: Array(FormURLEncoding.encode(form).utf8), timeout: requestTimeout, connectTimeout: connectTimeout)
        // The auth server is not the API gateway: no token from the partner's bucket.
        let response = try send(request, idempotent: idempotent, requestID: nil, lane: nil)
        guard (200..<300).contains(response.status) else {
            let oauthError = (try? JSONDecoderFactory.decoder.decode(OAuthErrorBody.self, from: Data(response.body)))?
                .error
            let code: SmokeballError.Code =
                switch (response.status, oauthError) {
                case (500...599, _): .unavailable
                case (429, _): .rateLimited
                case (_, "invalid_grant"): .invalidGrant
                default: .tokenRefused
                }
            throw SmokeballError(code, upstreamStatus: response.status, oauthError: oauthError)
        }
        do {
            let decoded = try JSONDecoderFactory.decoder.decode(TokenResponse.self, from: Data(response.body))
            guard !decoded.accessToken.isEmpty, decoded.expiresIn > 0 else {
                throw SmokeballError(.invalidResponse, upstreamStatus: response.status)
            }
            return decoded
        } catch let error as SmokeballError {
            throw error
        } catch {
            throw SmokeballError(.invalidResponse, upstreamStatus: response.status)
        }
    }

    // MARK: Resources

    /// `GET /firm`: the account the token acts for.
    public func firm(_ access: SmokeballAccess, lane: SmokeballLane = .interactive) throws -> SmokeballResult<Firm> {
        try get("/firm", access: access, lane: lane)
    }

    /// `GET /staff/{id}`.
    public func staffMember(id: String, access: SmokeballAccess, lane: SmokeballLane = .interactive) throws
        -> SmokeballResult<Staff>
    {
        try get("/staff/" + PercentEncoding.encode(id), access: access, lane: lane)
    }

    /// Every staff member (`GET /staff`, all pages).
    public func allStaff(_ access: SmokeballAccess, lane: SmokeballLane = .interactive) throws -> [Staff] {
        try all("/staff", access: access, lane: lane)
    }

    /// The staff member who is user `userID` (the one who signed in: see `AccessTokenClaims`),
    /// nil when none is. Smokeball has no "current user" endpoint, so the staff list is searched.
    public func staffMember(userID: String, access: SmokeballAccess, lane: SmokeballLane = .interactive) throws
        -> Staff?
    {
        let wanted = userID.lowercased()
        var found: Staff?
        try forEachPage("/staff", access: access, lane: lane) { (page: [Staff]) in
            if found == nil { found = page.first { $0.userId?.lowercased() == wanted } }
            return found == nil
        }
        return found
    }

    /// The event types subscriptions may name (`GET /webhooks/types`).
    public func webhookEventTypes(_ access: SmokeballAccess, lane: SmokeballLane = .interactive) throws -> [String] {
        let types: SmokeballResult<StringCollection> = try get("/webhooks/types", access: access, lane: lane)
        return types.value.value ?? []
    }

    /// Every webhook subscription of the account (`GET /webhooks`, all pages).
    public func webhookSubscriptions(_ access: SmokeballAccess, lane: SmokeballLane = .interactive) throws
        -> [WebhookSubscription]
    {
        try all("/webhooks", access: access, lane: lane)
    }

    public func webhookSubscription(id: String, access: SmokeballAccess, lane: SmokeballLane = .interactive) throws
        -> SmokeballResult<WebhookSubscription>
    {
        try get("/webhooks/" + PercentEncoding.encode(id), access: access, lane: lane)
    }

    /// `POST /webhooks` (answers 200 with the subscription).
    public func createWebhookSubscription(
        _ subscription: WebhookSubscriptionRequest, access: SmokeballAccess, lane: SmokeballLane = .interactive
    ) throws -> SmokeballResult<WebhookSubscription> {
        try decoded(
            try call("POST", "/webhooks", body: try encode(subscription), access: access, lane: lane))
    }

    /// `PUT /webhooks/{id}`.
    public func updateWebhookSubscription(
        id: String, _ subscription: WebhookSubscriptionRequest, access: SmokeballAccess,
        lane: SmokeballLane = .interactive
    ) throws -> SmokeballResult<WebhookSubscription> {
        try decoded(
            try call(
                "PUT", "/webhooks/" + PercentEncoding.encode(id), body: try encode(subscription), access: access,
                lane: lane))
    }

    /// `DELETE /webhooks/{id}`.
    public func deleteWebhookSubscription(id: String, access: SmokeballAccess, lane: SmokeballLane = .interactive)
        throws -> SmokeballResult<Accepted>
    {
        accepted(try call("DELETE", "/webhooks/" + PercentEncoding.encode(id), access: access, lane: lane))
    }

    /// `POST /webhooks/{id}/notify`: Smokeball sends the subscription a `noop` event.
    public func notifyWebhookSubscription(id: String, access: SmokeballAccess, lane: SmokeballLane = .interactive)
        throws -> SmokeballResult<Accepted>
    {
        accepted(
            try call(
                "POST", "/webhooks/" + PercentEncoding.encode(id) + "/notify", access: access, lane: lane))
    }

    /// `GET /mattertypes` (all pages), filtered as Smokeball filters (`Name` partial match).
    public func matterTypes(
        name: String? = nil, location: String? = nil, category: String? = nil, access: SmokeballAccess,
        lane: SmokeballLane = .interactive
    ) throws -> [MatterTypeInfo] {
        var query: [(String, String)] = []
        if let name { query.append(("Name", name)) }
        if let location { query.append(("Location", location)) }
        if let category { query.append(("Category", category)) }
        return try all("/mattertypes", query: query, access: access, lane: lane)
    }

    // MARK: Generic calls

    /// A GET decoded as `Value`.
    public func get<Value: Decodable & Sendable>(
        _ path: String, query: [(String, String)] = [], access: SmokeballAccess, lane: SmokeballLane = .interactive
    ) throws -> SmokeballResult<Value> {
        try decoded(try call("GET", path, query: query, access: access, lane: lane))
    }

    /// A write (POST/PUT/PATCH/DELETE) whose answer is a Link: usually 202, processed later.
    /// `requestID`: the `RequestId` to send (one recorded in a durable intent before the call);
    /// nil for a fresh one.
    public func write(
        _ method: String, _ path: String, body: some Encodable, access: SmokeballAccess,
        lane: SmokeballLane = .interactive, requestID: String? = nil
    ) throws -> SmokeballResult<Accepted> {
        accepted(try call(method, path, body: try encode(body), access: access, lane: lane, requestID: requestID))
    }

    /// A write whose answer is a JSON body (`POST .../documents/files` answers `UploadFileInfo`).
    public func write<Value: Decodable & Sendable>(
        _ method: String, _ path: String, body: some Encodable, access: SmokeballAccess,
        lane: SmokeballLane = .interactive, requestID: String? = nil, as type: Value.Type
    ) throws -> SmokeballResult<Value> {
        try decoded(
            try call(method, path, body: try encode(body), access: access, lane: lane, requestID: requestID))
    }

    /// Follows `offset`/`limit` from the first page to the last, handing each page's items to
    /// `body`, which returns false to stop early.
    public func forEachPage<Item: Decodable & Sendable>(
        _ path: String, query: [(String, String)] = [], access: SmokeballAccess, lane: SmokeballLane = .interactive,
        _ body: ([Item]) throws -> Bool
    ) throws {
        var offset = 0
        while true {
            let page: SmokeballResult<PagedCollection<Item>> = try get(
                path, query: query + [("Offset", String(offset)), ("Limit", String(pageSize))], access: access,
                lane: lane)
            let items = page.value.value ?? []
            guard try body(items) else { return }
            offset += items.count
            // The end: an empty or short page, or as many items as the envelope's `size` says.
            if items.isEmpty || items.count < pageSize { return }
            if let size = page.value.size, offset >= size { return }
        }
    }

    /// Every item of a paged list.
    public func all<Item: Decodable & Sendable>(
        _ path: String, query: [(String, String)] = [], access: SmokeballAccess, lane: SmokeballLane = .interactive
    ) throws -> [Item] {
        var items: [Item] = []
        try forEachPage(path, query: query, access: access, lane: lane) { (page: [Item]) in
            items += page
            return true
        }
        return items
    }

    /// PUTs bytes to a pre-signed upload URL: no Smokeball headers, an empty `Content-Type` (the
    /// URL is signed for one), no token from the rate limit, the long upload timeout.
    public func upload(_ bytes: [UInt8], to uploadURL: String) throws {
        let request = HTTPRequest(
            method: "PUT", url: uploadURL, headers: [("Content-Type", "")], body: bytes, timeout: uploadTimeout,
            connectTimeout: connectTimeout)
        let response = try send(request, idempotent: true, requestID: nil, lane: nil)
        try Self.checkUpload(response)
    }

    /// Streams the file at `path` to a pre-signed upload URL, as `upload(_:to:)` sends bytes:
    /// memory stays bounded whatever the size. See `upload(_:to:expiry:stall:)`.
    public func upload(
        fileAt path: String, to uploadURL: String, expiry: Date? = nil, stall: StallLimit = .standard
    ) throws {
        guard let file = FileHandle(forReadingAtPath: path) else {
            throw HTTPClientError(code: .localFile, curlCode: 0)
        }
        try upload(file, to: uploadURL, expiry: expiry, stall: stall)
    }

    /// Streams `file` (from its start) to a pre-signed upload URL: an empty `Content-Type`, no
    /// Smokeball headers, no token from the rate limit, `uploadTimeout` overall and `stall` for a
    /// transfer that stops moving. A URL past its `expiry` (Smokeball's `expiry` of the file) is
    /// not tried; one S3 refuses as expired or used throws `UploadURLExpiredError`: ask for a new
    /// URL. A local read failure throws `HTTPClientError.localFile`; other failures are
    /// `SmokeballError`s.
    public func upload(_ file: FileHandle, to uploadURL: String, expiry: Date? = nil, stall: StallLimit = .standard)
        throws
    {
        if let expiry, expiry <= Date() { throw UploadURLExpiredError(upstreamStatus: nil) }
        let request = HTTPRequest(
            method: "PUT", url: uploadURL, headers: [("Content-Type", "")], timeout: uploadTimeout,
            connectTimeout: connectTimeout)
        let response = try send(request, idempotent: true, requestID: nil, lane: nil) {
            (request: HTTPRequest) throws(HTTPClientError) -> HTTPResponse in
            try self.http.upload(request, from: file, stall: stall)
        }
        try Self.checkUpload(response)
    }

    /// S3's answer to a PUT: 2xx, or a refusal. A 403 is an expired or used URL unless S3 says the
    /// request differs from what was signed (`SignatureDoesNotMatch`: a client fault, not cured
    /// by a new URL).
    static func checkUpload(_ response: HTTPResponse) throws {
        guard !(200..<300).contains(response.status) else { return }
        let signatureMismatch = String(decoding: response.body.prefix(4096), as: UTF8.self)
            .contains("<Code>SignatureDoesNotMatch</Code>")
        if response.status == 403 {
            if signatureMismatch { throw SmokeballError(.rejected, upstreamStatus: 403) }
            throw UploadURLExpiredError(upstreamStatus: 403)
        }
        throw SmokeballError(SmokeballError.from(response, requestID: nil).code, upstreamStatus: response.status)
    }

    /// One API call with its headers, rate-limit token and retries; a non-2xx answer throws.
    /// `requestID` nil: a fresh `RequestId`.
    public func call(
        _ method: String, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil,
        access: SmokeballAccess, lane: SmokeballLane = .interactive, requestID: String? = nil
    ) throws -> (response: HTTPResponse, requestID: String) {
        var url = endpoints.apiBaseURL
        if let account = access.accountID { url += "/" + PercentEncoding.encode(account) }
        url = URLQuery.build(base: url + path, query)
        let requestID = requestID ?? UUID().uuidString.lowercased()
        var headers = [
            ("x-api-key", credentials.apiKey), ("Authorization", "Bearer " + access.accessToken),
            ("RequestId", requestID), ("Accept", "application/json"),
        ]
        if let user = access.actingUserID { headers.append(("UserId", user)) }
        if body != nil { headers.append(("Content-Type", "application/json")) }
        let request = HTTPRequest(
            method: method, url: url, headers: headers, body: body ?? [], timeout: requestTimeout,
            connectTimeout: connectTimeout)
        let response = try send(
            request, idempotent: method == "GET" || method == "HEAD", requestID: requestID, lane: lane)
        guard (200..<300).contains(response.status) else { throw SmokeballError.from(response, requestID: requestID) }
        return (response, requestID)
    }

    /// Sends with the retry rules of `RetryPolicy`. `lane` nil: no rate-limit token (the auth
    /// server, pre-signed URLs). Returns the last answer, whatever its status.
    /// `transfer` performs one attempt (default: the in-memory `HTTPClient.send`).
    private func send(
        _ request: HTTPRequest, idempotent: Bool, requestID: String?, lane: SmokeballLane?,
        transfer: ((HTTPRequest) throws(HTTPClientError) -> HTTPResponse)? = nil
    ) throws -> HTTPResponse {
        var attempt = 1
        while true {
            if let lane, let rateLimit { try rateLimit.acquire(lane) }
            let response: HTTPResponse
            do {
                if let transfer {
                    response = try transfer(request)
                } else {
                    response = try http.send(request)
                }
            } catch {
                // The local file, not the network: trying again would not help.
                if error.code == .localFile { throw error }
                // Could not connect: nothing was sent, so any call may go again. A time-out or a
                // dropped connection may have been processed: only idempotent calls go again.
                let retryable = error.code == .couldNotConnect || (idempotent && error.isRetryable)
                guard retryable, attempt < retryPolicy.maxAttempts else {
                    throw SmokeballError.transport(error, requestID: requestID)
                }
                PartnerRateLimit.sleep(retryPolicy.backoff(afterAttempt: attempt))
                attempt += 1
                continue
            }
            let delay: Double?
            switch response.status {
            case 429:
                rateLimit?.recordRateLimited()
                // Smokeball sends no Retry-After (FACTS.md); honour one if it ever comes.
                if let asked = RetryPolicy.retryAfter(response) {
                    delay = asked <= retryPolicy.maxRetryAfter ? asked : nil
                } else {
                    delay = retryPolicy.backoff(afterAttempt: attempt)
                }
            case 500...599 where idempotent:
                delay = retryPolicy.backoff(afterAttempt: attempt)
            default:
                delay = nil
            }
            guard let delay, attempt < retryPolicy.maxAttempts else { return response }
            PartnerRateLimit.sleep(delay)
            attempt += 1
        }
    }

    private func encode(_ value: some Encodable) throws -> [UInt8] {
        Array(try JSONDecoderFactory.encoder.encode(value))
    }

    private func decoded<Value: Decodable & Sendable>(_ answer: (response: HTTPResponse, requestID: String)) throws
        -> SmokeballResult<Value>
    {
        do {
            let value = try JSONDecoderFactory.decoder.decode(Value.self, from: Data(answer.response.body))
            return SmokeballResult(value: value, requestID: answer.requestID, status: answer.response.status)
        } catch {
            throw SmokeballError(.invalidResponse, upstreamStatus: answer.response.status, requestID: answer.requestID)
        }
    }

    private func accepted(_ answer: (response: HTTPResponse, requestID: String)) -> SmokeballResult<Accepted> {
        SmokeballResult(
            value: Self.acceptedLink(answer.response), requestID: answer.requestID, status: answer.response.status)
    }

    /// The id of what a write made or will make: the Link body's `id`, else the last segment of
    /// its `href` or of the `Location` header.
    static func acceptedLink(_ response: HTTPResponse) -> Accepted {
        let link = try? JSONDecoderFactory.decoder.decode(Link.self, from: Data(response.body))
        let href = link?.href ?? response.header("Location")
        var id = link?.id
        if id == nil || id?.isEmpty == true, let href, let path = URLComponents(string: href)?.path {
            id = path.split(separator: "/").last.map(String.init)
        }
        return Accepted(id: id, href: href)
    }
}

/// The claims of a Cognito access token (a JWT), read without verifying it: it came straight
/// from the token endpoint over TLS and is only used to find who signed in. Opaque tokens (the
/// sandbox's) have none.
public enum AccessTokenClaims {
    /// The user the token was issued to: `username`, else `sub`; nil for an opaque token.
    public static func userID(_ accessToken: String) -> String? {
        let parts = accessToken.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = Base64URL.decode(parts[1]),
            let claims = (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any]
        else { return nil }
        return (claims["username"] as? String) ?? (claims["sub"] as? String)
    }
}
