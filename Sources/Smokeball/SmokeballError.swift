import Foundation
import HTTPClient

/// Smokeball's `application/problem+json` error body, plus the `errors` array it adds.
public struct ProblemDetails: Decodable, Sendable, Equatable {
    /// One entry of Smokeball's `errors` array. Its fields are not published, so the usual
    /// ones are read when present and anything else is ignored.
    public struct Entry: Decodable, Sendable, Equatable {
        public var code: String?
        public var message: String?
        public var property: String?
    }

    public var type: String?
    public var title: String?
    public var status: Int?
    public var detail: String?
    public var instance: String?
    public var errors: [Entry]?
}

/// A failed Smokeball call, small enough for a route to answer and log. `description` names the
/// code and statuses only: Smokeball's details may echo what was sent.
public struct SmokeballError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// No Smokeball credentials on this server.
        case notConfigured = "not_configured"
        /// 401 or 403: the token or the API key was not accepted (Smokeball uses both).
        case unauthorized
        case notFound = "not_found"
        /// Another 4xx: Smokeball refused the request itself.
        case rejected
        /// Still 429 after every retry, or the partner's own budget could not be had in time.
        case rateLimited = "rate_limited"
        /// 5xx after every retry.
        case unavailable
        case timedOut = "timed_out"
        /// Could not connect, or the connection dropped.
        case connectionFailed = "connection_failed"
        /// An answer that does not have the documented shape.
        case invalidResponse = "invalid_response"
        /// OAuth `invalid_grant`: the code or refresh token is no longer good.
        case invalidGrant = "invalid_grant"
        /// Another OAuth error from the token endpoint (`invalid_client`, ...).
        case tokenRefused = "token_refused"
    }

    public var code: Code
    /// What a CaseHug route answers for it.
    public var httpStatus: Int
    /// Smokeball's status, when it answered (nil for transport failures and local refusals).
    public var upstreamStatus: Int?
    /// The `RequestId` of the (last) attempt, to match Smokeball's logs and webhook events.
    public var requestID: String?
    /// The ProblemDetails body, when there was one. Not part of `description`.
    public var problem: ProblemDetails?
    /// The OAuth `error` value from the token endpoint (a fixed vocabulary, safe to log).
    public var oauthError: String?

    public init(
        _ code: Code, upstreamStatus: Int? = nil, requestID: String? = nil, problem: ProblemDetails? = nil,
        oauthError: String? = nil
    ) {
        self.code = code
        self.upstreamStatus = upstreamStatus
        self.requestID = requestID
        self.problem = problem
        self.oauthError = oauthError
        httpStatus =
            switch code {
            case .notConfigured, .rateLimited, .unavailable, .connectionFailed: 503
            case .timedOut: 504
            case .notFound: 404
            case .unauthorized, .rejected, .invalidResponse, .invalidGrant, .tokenRefused: 502
            }
    }

    public var description: String {
        var text = "SmokeballError.\(code.rawValue)"
        if let upstreamStatus { text += " (Smokeball HTTP \(upstreamStatus))" }
        if let oauthError, Self.isPlainWord(oauthError) { text += " [\(oauthError)]" }
        return text
    }

    /// The answer of a failed call: 401/403/404/4xx/5xx, with the body read as ProblemDetails.
    static func from(_ response: HTTPResponse, requestID: String?) -> SmokeballError {
        let problem = try? JSONDecoderFactory.decoder.decode(ProblemDetails.self, from: Data(response.body))
        let code: Code =
            switch response.status {
            case 401, 403: .unauthorized
            case 404: .notFound
            case 429: .rateLimited
            case 500...599: .unavailable
            default: .rejected
            }
        return SmokeballError(code, upstreamStatus: response.status, requestID: requestID, problem: problem)
    }

    static func transport(_ error: HTTPClientError, requestID: String?) -> SmokeballError {
        SmokeballError(error.code == .timedOut ? .timedOut : .connectionFailed, requestID: requestID)
    }

    /// OAuth error codes are `[a-z_]` words; anything else is not echoed.
    private static func isPlainWord(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 64 && text.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || $0 == 95 }
    }
}

/// A pre-signed upload URL that no longer takes the bytes: past its `expiry`, already used, or
/// refused by S3 as expired (403). The cure is a new URL for the same file. `upstreamStatus` is nil
/// when the URL was not tried because its `expiry` had passed. Names no URL (its query is a
/// credential).
public struct UploadURLExpiredError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code = "upload_url_expired"
    /// What a CaseHug route answers for it (Smokeball's side refused).
    public let httpStatus = 502
    public var upstreamStatus: Int?

    public init(upstreamStatus: Int?) {
        self.upstreamStatus = upstreamStatus
    }

    public var description: String {
        "UploadURLExpiredError" + (upstreamStatus.map { " (HTTP \($0))" } ?? " (past its expiry)")
    }
}
