import Basics
import Foundation

/// An HTTP response written back to nginx as a CGI response (`Status:` line, headers, body).
public struct Response: Sendable {
    public var status: HTTPStatus
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// Not sent: facts the runtime adds to the request's log line (one line per request, with
    /// its request id), so a handler need not write a line of its own. Safe fields only, as for
    /// `Logger`.
    public var logFields: [String: any Sendable] = [:]

    public init(status: HTTPStatus = .ok, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response from a JSON-compatible value (dictionaries, arrays, strings, numbers,
    /// booleans, `NSNull`). Keys are sorted so answers are stable. A value JSON cannot express
    /// is a programming error; it answers 500 rather than a truncated or empty document.
    public static func json(_ value: Any, status: HTTPStatus = .ok, headers: [(String, String)] = []) -> Response {
        guard let body = try? JSONWriter.encode(value) else {
            let fallback = #"{"error":{"code":"internal_error","message":"The answer could not be encoded"}}"#
            return Response(
                status: .internalServerError, headers: [("Content-Type", "application/json")],
                body: Array(fallback.utf8))
        }
        return Response(status: status, headers: [("Content-Type", "application/json")] + headers, body: body)
    }

    /// A JSON response from a typed answer (see `JSONStreamEncoder` for the format).
    public static func json(encoding value: some Encodable, status: HTTPStatus = .ok) throws -> Response {
        Response(
            status: status, headers: [("Content-Type", "application/json")], body: try JSONStreamEncoder.encode(value))
    }

    public static func redirect(to location: String, status: HTTPStatus = .found) -> Response {
        Response(status: status, headers: [("Location", location), ("Cache-Control", "no-store")])
    }

    /// The error answer every route gives: `{"error": {"code", "message"}, "request_id"}`.
    public static func error(_ error: HTTPError, requestID: String) -> Response {
        var response =
            (try? json(encoding: ErrorAnswer(error: error, requestID: requestID), status: error.status))
            ?? Response(status: error.status)
        response.headers += error.headers
        return response
    }

    /// `{"error": {"code", "message"[, "field"]}, "request_id"}`.
    struct ErrorAnswer: Encodable {
        struct Detail: Encodable {
            let code: String
            let message: String
            let field: String?

            enum CodingKeys: String, CodingKey { case code, message, field }

            // `field` only on errors about a field: every other error keeps its two keys.
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(code, forKey: .code)
                try container.encode(message, forKey: .message)
                if let field { try container.encode(field, forKey: .field) }
            }
        }

        let error: Detail
        let requestID: String

        init(error: HTTPError, requestID: String) {
            self.error = Detail(code: error.code, message: error.message, field: error.field)
            self.requestID = requestID
        }

        enum CodingKeys: String, CodingKey {
            case error
            case requestID = "request_id"
        }
    }

    public func header(_ name: String) -> String? {
        headers.first { ASCIICase.equal($0.0, name) }?.1
    }

    /// The CGI response bytes. Header values lose CR and LF so no handler can split a response.
    /// Every answer carries `X-Content-Type-Options: nosniff`, and `Cache-Control: no-store`
    /// unless the handler chose its own caching: answers are per-user and must not be kept by
    /// a shared cache or a browser.
    public func serialized(requestID: String) -> [UInt8] {
        var head = "Status: \(status.code) \(Self.clean(status.reason))\r\n"
        var hasContentType = false
        var hasCacheControl = false
        for (name, value) in headers {
            // A name that is not an HTTP token would make nginx refuse the whole answer (502).
            guard Self.isToken(name), !Self.isReserved(name) else { continue }
            if Self.equal(name, "Content-Type") { hasContentType = true }
            if Self.equal(name, "Cache-Control") { hasCacheControl = true }
            head += "\(name): \(Self.clean(value))\r\n"
        }
        if !hasContentType && !body.isEmpty { head += "Content-Type: application/octet-stream\r\n" }
        if !hasCacheControl { head += "Cache-Control: no-store\r\n" }
        head += "X-Content-Type-Options: nosniff\r\n"
        head += "Content-Length: \(body.count)\r\n"
        head += "X-Request-Id: \(Self.clean(requestID))\r\n\r\n"
        return [UInt8](head.utf8) + body
    }

    /// Headers a handler may not send. The runtime owns framing, the status, the request id and
    /// `nosniff`; `Status` would be read by nginx as the CGI status; `X-Accel-*` are nginx's
    /// instructions to itself (internal redirects to any location, rate and buffering changes).
    static func isReserved(_ name: String) -> Bool {
        for reserved in ["Status", "Content-Length", "X-Request-Id", "X-Content-Type-Options"]
        where equal(name, reserved) {
            return true
        }
        return name.utf8.count >= 8 && ASCIICase.equal(name.prefix(8), "X-Accel-")
    }

    /// Header names are tokens (ASCII): compared as such.
    static func equal(_ name: String, _ other: String) -> Bool { ASCIICase.equal(name, other) }

    /// RFC 9110's token: what a header name may be.
    static func isToken(_ name: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"):
                    return true
                default:
                    return "!#$%&'*+-.^_`|~".utf8.contains(byte)
                }
            }
    }

    static func clean(_ text: String) -> String {
        String(text.unicodeScalars.filter { $0 != "\r" && $0 != "\n" && $0 != "\0" })
    }
}
