import FastCGI

/// Why `SmokeballTokenProvider` has no token for a firm. Its `description` names the code and,
/// for `needs_reconnect`, the stored reason (a `[a-z_]` word the database checks), nothing else.
public struct SmokeballTokenError: Error, Sendable, Equatable, CustomStringConvertible, HTTPErrorConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The firm has no active Smokeball connection (never connected, or disconnected).
        case notConnected = "not_connected"
        /// Smokeball refused the refresh token (`invalid_grant`: revoked, expired): only the
        /// firm reconnecting helps, so no call reaches Smokeball until it does.
        case needsReconnect = "needs_reconnect"
        /// The token endpoint is down (or a refresh did not finish in time) and the stored
        /// access token has lapsed; a later call tries again.
        case unavailable = "smokeball_unavailable"
        /// The server has no Smokeball credentials.
        case notConfigured = "not_configured"
    }

    public let code: Code
    /// For `needsReconnect`: the `needs_reconnect_reason` (`invalid_grant`, ...).
    public let reason: String?
    /// What went wrong underneath (a `SmokeballError`'s code), for the log only.
    public let detail: String?

    public init(_ code: Code, reason: String? = nil, detail: String? = nil) {
        self.code = code
        self.reason = reason
        self.detail = detail
    }

    public var httpStatus: HTTPStatus {
        switch code {
        case .notConnected, .needsReconnect: .conflict
        case .unavailable, .notConfigured: .serviceUnavailable
        }
    }

    public var description: String {
        var text = "SmokeballTokenError.\(code.rawValue)"
        if let reason { text += " (\(reason))" }
        return text
    }

    public var httpError: HTTPError {
        switch code {
        case .notConnected:
            HTTPError(httpStatus, code: code.rawValue, "Smokeball is not connected for this firm")
        case .needsReconnect:
            HTTPError(
                httpStatus, code: code.rawValue,
                "Smokeball must be reconnected by a firm administrator" + (reason.map { " (\($0))" } ?? ""))
        case .unavailable:
            HTTPError(
                httpStatus, code: code.rawValue, "Smokeball is unavailable; try again shortly",
                headers: [("Retry-After", "30")], logDetail: detail)
        case .notConfigured:
            HTTPError(httpStatus, code: code.rawValue, "Smokeball integration is not configured")
        }
    }
}
