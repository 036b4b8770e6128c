import Basics
import Foundation

/// An HTTP request as nginx hands it over FastCGI. Built by a pure function from the params
/// dictionary and the body, so it is testable with dictionary literals and independent of the
/// libfcgi request that carried it (which is recycled by `FCGX_Finish_r`).
public struct Request: Sendable {
    public let method: String
    /// The path without the query string.
    public let path: String
    public let query: [String: String]
    /// The raw query string, for parameters that may repeat (`Search=a&Search=b`).
    public let queryString: String
    /// Header names are lower-cased (`x-request-id`, `authorization`, `content-type`).
    public let headers: [String: String]
    public let body: [UInt8]
    public let remoteAddress: String
    /// Taken from `X-Request-Id` when it looks safe to log, otherwise generated.
    public let requestID: String

    public init(
        method: String, path: String, query: [String: String] = [:], queryString: String? = nil,
        headers: [String: String] = [:], body: [UInt8] = [], remoteAddress: String = "", requestID: String
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.queryString =
            queryString
            ?? FormURLEncoding.encode(query.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        self.headers = headers
        self.body = body
        self.remoteAddress = remoteAddress
        self.requestID = requestID
    }

    /// Builds a request from FastCGI params (CGI/1.1 meta-variables) and the body bytes.
    public init(params: [String: String], body: [UInt8], newRequestID: () -> String = Request.generateID) {
        var headers: [String: String] = [:]
        for (key, value) in params where key.hasPrefix("HTTP_") {
            headers[Self.headerName(fromParam: key)] = value
        }
        if let contentType = params["CONTENT_TYPE"], !contentType.isEmpty { headers["content-type"] = contentType }
        if let length = params["CONTENT_LENGTH"], !length.isEmpty { headers["content-length"] = length }

        self.method = (params["REQUEST_METHOD"] ?? "GET").uppercased()
        let uri = params["DOCUMENT_URI"] ?? params["REQUEST_URI"] ?? params["SCRIPT_NAME"] ?? "/"
        self.path =
            uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? "/"
        self.queryString = params["QUERY_STRING"] ?? ""
        self.query = QueryString.dictionary(queryString)
        self.headers = headers
        self.body = body
        self.remoteAddress = params["REMOTE_ADDR"] ?? ""
        if let given = headers["x-request-id"], Self.isLoggableID(given) {
            self.requestID = given
        } else {
            self.requestID = newRequestID()
        }
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }

    /// A cookie's value from the `Cookie` header (RFC 6265: `a=b; c="d"`), the first of that
    /// name; names match exactly. Nil when absent.
    public func cookie(_ name: String) -> String? {
        guard let header = header("cookie") else { return nil }
        for pair in header.split(separator: ";") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0].trimmingSpaces == name else { continue }
            var value = parts[1].trimmingSpaces
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = value.dropFirst().dropLast() }
            return String(value)
        }
        return nil
    }

    /// `HTTP_X_REQUEST_ID` → `x-request-id`.
    static func headerName(fromParam key: String) -> String {
        // Byte-wise: CGI param names are ASCII, and Foundation's replacingOccurrences showed up in
        // profiles at one call per header per request.
        let bytes = key.utf8.dropFirst(5).map { byte -> UInt8 in
            switch byte {
            case UInt8(ascii: "_"): UInt8(ascii: "-")
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte + 32
            default: byte
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Every value of a query parameter, in order, matching the name without regard to case.
    public func queryValues(_ name: String) -> [String] {
        QueryString.items(queryString).filter { $0.0.caseInsensitiveCompare(name) == .orderedSame }.map(\.1)
    }

    /// Request ids end up in logs and response headers: accept only short, plain tokens.
    static func isLoggableID(_ id: String) -> Bool {
        guard (1...128).contains(id.utf8.count) else { return false }
        return id.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                return true
            default:
                return false
            }
        }
    }

    public static func generateID() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return String(format: "%016llx%016llx", high, low)
    }

    /// The body decoded as a JSON object, or a 400 naming what is wrong.
    public func jsonObject() throws(HTTPError) -> [String: Any] {
        let type = header("content-type")?.lowercased() ?? ""
        guard type.hasPrefix("application/json") else {
            throw HTTPError(
                .unsupportedMediaType, code: "unsupported_media_type", "Content-Type must be application/json")
        }
        guard !body.isEmpty else { throw HTTPError(.badRequest, code: "invalid_json", "Request body is empty") }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(body), options: [])
        } catch {
            throw HTTPError(.badRequest, code: "invalid_json", "Request body is not valid JSON")
        }
        guard let object = parsed as? [String: Any] else {
            throw HTTPError(.badRequest, code: "invalid_json", "Request body must be a JSON object")
        }
        return object
    }
}
