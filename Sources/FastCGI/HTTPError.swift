/// An HTTP status with its reason phrase.
public struct HTTPStatus: Sendable, Equatable, Hashable {
    public let code: Int
    public let reason: String

    public init(_ code: Int, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public static let ok = HTTPStatus(200, "OK")
    public static let created = HTTPStatus(201, "Created")
    public static let accepted = HTTPStatus(202, "Accepted")
    public static let noContent = HTTPStatus(204, "No Content")
    public static let found = HTTPStatus(302, "Found")
    public static let seeOther = HTTPStatus(303, "See Other")
    public static let badRequest = HTTPStatus(400, "Bad Request")
    public static let unauthorized = HTTPStatus(401, "Unauthorized")
    public static let forbidden = HTTPStatus(403, "Forbidden")
    public static let notFound = HTTPStatus(404, "Not Found")
    public static let methodNotAllowed = HTTPStatus(405, "Method Not Allowed")
    public static let conflict = HTTPStatus(409, "Conflict")
    public static let payloadTooLarge = HTTPStatus(413, "Payload Too Large")
    public static let unsupportedMediaType = HTTPStatus(415, "Unsupported Media Type")
    public static let unprocessableEntity = HTTPStatus(422, "Unprocessable Entity")
    public static let tooManyRequests = HTTPStatus(429, "Too Many Requests")
    public static let internalServerError = HTTPStatus(500, "Internal Server Error")
    public static let badGateway = HTTPStatus(502, "Bad Gateway")
    public static let serviceUnavailable = HTTPStatus(503, "Service Unavailable")
    public static let gatewayTimeout = HTTPStatus(504, "Gateway Timeout")
}

/// An error that carries its HTTP answer. `message` is shown to the caller, so it must never
/// contain secrets or PHI; `logDetail` goes to the log only, and must obey the same rule for PHI.
public struct HTTPError: Error, Sendable, CustomStringConvertible {
    public let status: HTTPStatus
    public let code: String
    public let message: String
    public let headers: [(String, String)]
    public let logDetail: String?
    /// The request field the error is about (`case_type_mappings.divorce_standard`), for a form
    /// to point at; the answer carries `field` only when there is one.
    public let field: String?

    public init(
        _ status: HTTPStatus, code: String, _ message: String, headers: [(String, String)] = [],
        logDetail: String? = nil, field: String? = nil
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.logDetail = logDetail
        self.field = field
    }

    public var description: String { "\(status.code) \(code)" }

    public static func methodNotAllowed(allowed: [String]) -> HTTPError {
        HTTPError(
            .methodNotAllowed, code: "method_not_allowed", "Method not allowed",
            headers: [("Allow", allowed.joined(separator: ", "))])
    }

    public static func internalError(logDetail: String? = nil) -> HTTPError {
        HTTPError(.internalServerError, code: "internal_error", "Internal server error", logDetail: logDetail)
    }
}

/// Errors from lower layers (database, crypto, HTTP client) map themselves to an HTTP answer.
public protocol HTTPErrorConvertible: Error {
    var httpError: HTTPError { get }
}
