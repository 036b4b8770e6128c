import Foundation
import Testing

@testable import FastCGI

/// The head lines (without the status line) and the body of a serialized CGI response.
struct SerializedResponse {
    let statusLine: String
    let headerLines: [String]
    let body: [UInt8]

    init(_ bytes: [UInt8]) throws {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        let end = try #require(
            bytes.indices.first { index in
                index + separator.count <= bytes.count && Array(bytes[index..<index + separator.count]) == separator
            })
        let head = try #require(String(bytes: bytes[..<end], encoding: .utf8))
        var lines = head.components(separatedBy: "\r\n")
        statusLine = lines.removeFirst()
        headerLines = lines
        body = Array(bytes[(end + separator.count)...])
    }

    func values(_ name: String) -> [String] {
        headerLines.compactMap { line in
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].caseInsensitiveCompare(name) == .orderedSame else { return nil }
            return parts[1].trimmingCharacters(in: .whitespaces)
        }
    }
}

@Suite struct ResponseTests {
    @Test func serializedStartsWithStatusAndEndsHeadWithLengthAndRequestID() throws {
        let response = Response(status: .ok, headers: [("Content-Type", "text/plain")], body: Array("hello".utf8))
        let bytes = response.serialized(requestID: "req-42")
        #expect(bytes.starts(with: Array("Status: 200 OK\r\n".utf8)))
        let parsed = try SerializedResponse(bytes)
        #expect(parsed.statusLine == "Status: 200 OK")
        #expect(parsed.values("Content-Length") == ["5"])
        #expect(parsed.values("X-Request-Id") == ["req-42"])
        #expect(parsed.values("Content-Type") == ["text/plain"])
        #expect(parsed.body == Array("hello".utf8))
    }

    @Test func statusLineUsesCodeAndReason() throws {
        let parsed = try SerializedResponse(Response(status: .notFound).serialized(requestID: "r"))
        #expect(parsed.statusLine == "Status: 404 Not Found")
        #expect(parsed.values("Content-Length") == ["0"])
    }

    @Test func handlerContentLengthIsReplacedByTheRealOne() throws {
        let response = Response(headers: [("content-length", "999")], body: Array("abc".utf8))
        let parsed = try SerializedResponse(response.serialized(requestID: "r"))
        #expect(parsed.values("Content-Length") == ["3"])
    }

    @Test func headerInjectionIsNeutralised() throws {
        let response = Response(
            headers: [
                ("X-Evil", "a\r\nSet-Cookie: session=stolen"), ("X-Na\r\nme", "v\0al\n"),
                ("Location", "/next\rStatus: 500"),
            ], body: [])
        let parsed = try SerializedResponse(response.serialized(requestID: "r"))
        #expect(!parsed.headerLines.contains { $0.lowercased().hasPrefix("set-cookie") })
        #expect(!parsed.headerLines.contains { $0.hasPrefix("Status") })
        #expect(parsed.values("X-Evil") == ["aSet-Cookie: session=stolen"])
        // A name that is not an HTTP token would make nginx refuse the answer: it is dropped.
        #expect(parsed.values("X-Name").isEmpty)
        #expect(!parsed.headerLines.contains { $0.hasPrefix("X-Na") })
        #expect(parsed.values("Location") == ["/nextStatus: 500"])
        // Two handler headers plus the runtime's four (caching, nosniff, length, request id).
        #expect(parsed.headerLines.count == 6)
        #expect(!parsed.headerLines.contains { $0.contains("\0") || $0.contains("\r") || $0.contains("\n") })
    }

    @Test(arguments: ["X-Ok", "x_ok.1", "A!#$%&'*+-.^_`|~z"])
    func tokenNamesPass(name: String) {
        #expect(Response.isToken(name))
    }

    @Test(arguments: ["", "X Bad", "X:Bad", "X(Bad)", "X\"Bad\"", "Ünïcode", "X/Bad", "X\tBad"])
    func otherNamesAreDropped(name: String) throws {
        let parsed = try SerializedResponse(
            Response(headers: [(name, "v"), ("X-Kept", "k")], body: []).serialized(requestID: "r"))
        #expect(parsed.values("X-Kept") == ["k"])
        #expect(parsed.headerLines.count == 5)
    }

    @Test func runtimeOwnsTheRequestIDAndCleansTheStatusLine() throws {
        let response = Response(
            status: HTTPStatus(418, "Teapot\r\nSet-Cookie: a=b"), headers: [("x-request-id", "spoofed")], body: [])
        let parsed = try SerializedResponse(response.serialized(requestID: "req\r\nX-Injected: 1"))
        #expect(parsed.statusLine == "Status: 418 TeapotSet-Cookie: a=b")
        #expect(parsed.values("X-Request-Id") == ["reqX-Injected: 1"])
        #expect(parsed.values("X-Injected").isEmpty)
        #expect(!parsed.headerLines.contains { $0.lowercased().hasPrefix("set-cookie") })
    }

    @Test func nonEmptyBodyWithoutContentTypeGetsOctetStream() throws {
        let parsed = try SerializedResponse(Response(body: [1, 2, 3]).serialized(requestID: "r"))
        #expect(parsed.values("Content-Type") == ["application/octet-stream"])
        #expect(parsed.body == [1, 2, 3])
    }

    @Test func emptyBodyGetsNoDefaultContentTypeAndGivenTypeIsNotDuplicated() throws {
        let empty = try SerializedResponse(Response(status: .noContent).serialized(requestID: "r"))
        #expect(empty.values("Content-Type").isEmpty)
        let typed = try SerializedResponse(
            Response(headers: [("content-type", "text/csv")], body: [65]).serialized(requestID: "r"))
        #expect(typed.values("Content-Type") == ["text/csv"])
    }

    @Test func jsonResponseHasSortedKeysAndType() {
        let response = Response.json(["b": 1, "a": "x/y"], status: .created, headers: [("X-Extra", "1")])
        #expect(response.status == .created)
        #expect(response.header("content-type") == "application/json")
        #expect(response.header("X-Extra") == "1")
        #expect(String(decoding: response.body, as: UTF8.self) == #"{"a":"x/y","b":1}"#)
    }

    @Test func errorResponseShape() throws {
        let error = HTTPError.methodNotAllowed(allowed: ["GET", "POST"])
        let response = Response.error(error, requestID: "req-9")
        #expect(response.status == .methodNotAllowed)
        #expect(response.header("Allow") == "GET, POST")
        #expect(response.header("Content-Type") == "application/json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        #expect(Set(object.keys) == ["error", "request_id"])
        #expect(object["request_id"] as? String == "req-9")
        let inner = try #require(object["error"] as? [String: Any])
        #expect(Set(inner.keys) == ["code", "message"])
        #expect(inner["code"] as? String == "method_not_allowed")
        #expect(inner["message"] as? String == "Method not allowed")
    }

    @Test func errorResponseForCustomStatus() throws {
        let response = Response.error(HTTPError(.conflict, code: "duplicate", "Already exists"), requestID: "x")
        #expect(response.status.code == 409)
        let parsed = try SerializedResponse(response.serialized(requestID: "x"))
        #expect(parsed.statusLine == "Status: 409 Conflict")
        #expect(parsed.values("Content-Length") == [String(response.body.count)])
    }

    @Test func redirect() throws {
        let found = Response.redirect(to: "https://example.com/next?a=1")
        #expect(found.status == .found)
        #expect(found.header("Location") == "https://example.com/next?a=1")
        #expect(found.header("Cache-Control") == "no-store")
        #expect(found.body.isEmpty)
        let seeOther = Response.redirect(to: "/done", status: .seeOther)
        let parsed = try SerializedResponse(seeOther.serialized(requestID: "r"))
        #expect(parsed.statusLine == "Status: 303 See Other")
        #expect(parsed.values("Location") == ["/done"])
    }

    @Test(arguments: [
        "Status", "status", "X-Accel-Redirect", "x-accel-expires", "X-Accel-Limit-Rate", "X-Accel-Buffering",
        "X-Accel-Charset", "X-ACCEL-Anything", "Content-Length", "X-Content-Type-Options",
    ])
    func reservedHeadersFromAHandlerAreDropped(name: String) throws {
        let response = Response(headers: [(name, "/internal/secret"), ("X-Kept", "k")], body: Array("ok".utf8))
        let parsed = try SerializedResponse(response.serialized(requestID: "r"))
        #expect(parsed.values("X-Kept") == ["k"])
        #expect(!parsed.headerLines.contains { $0.contains("/internal/secret") })
        #expect(parsed.statusLine == "Status: 200 OK")
        #expect(parsed.values("Content-Length") == ["2"])
        #expect(parsed.values("X-Content-Type-Options") == ["nosniff"])
    }

    @Test func namesThatMerelyStartLikeReservedOnesAreKept() throws {
        let response = Response(headers: [("X-Accelerator", "a"), ("Status-Page", "b"), ("X-Acce", "c")])
        let parsed = try SerializedResponse(response.serialized(requestID: "r"))
        #expect(parsed.values("X-Accelerator") == ["a"])
        #expect(parsed.values("Status-Page") == ["b"])
        #expect(parsed.values("X-Acce") == ["c"])
    }

    @Test func everyAnswerIsNosniffAndNoStoreByDefault() throws {
        for response in [
            Response.json(["a": 1]), Response(status: .noContent),
            Response.error(HTTPError(.unauthorized, code: "missing_token", "No"), requestID: "r"),
        ] {
            let parsed = try SerializedResponse(response.serialized(requestID: "r"))
            #expect(parsed.values("Cache-Control") == ["no-store"])
            #expect(parsed.values("X-Content-Type-Options") == ["nosniff"])
        }
    }

    @Test func aHandlersOwnCacheControlIsKeptAndNotDoubled() throws {
        let response = Response(headers: [("cache-control", "public, max-age=60")], body: [])
        let parsed = try SerializedResponse(response.serialized(requestID: "r"))
        #expect(parsed.values("Cache-Control") == ["public, max-age=60"])
        let redirect = try SerializedResponse(Response.redirect(to: "/next").serialized(requestID: "r"))
        #expect(redirect.values("Cache-Control") == ["no-store"])
    }
}
