import Foundation
import Testing

@testable import FastCGI

struct ClosureHandler: Handler {
    let route = "test"
    let body: @Sendable (Request, RequestContext) throws -> Response

    func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        try body(request, context)
    }
}

struct FakeDatabaseError: HTTPErrorConvertible {
    var httpError: HTTPError {
        HTTPError(.serviceUnavailable, code: "database_unavailable", "Try again later", headers: [("Retry-After", "5")])
    }
}

struct LeakyError: Error, CustomStringConvertible {
    var description: String { "connection failed: password=hunter2-SECRET" }
}

@Suite struct RespondTests {
    let request = Request(params: ["REQUEST_METHOD": "GET", "HTTP_X_REQUEST_ID": "req-respond"], body: [])
    let log = Logger(route: "test")

    static func errorBody(_ response: Response) throws -> (code: String?, message: String?, requestID: String?) {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        let inner = object["error"] as? [String: Any]
        return (inner?["code"] as? String, inner?["message"] as? String, object["request_id"] as? String)
    }

    @Test func normalResponseIsPassedThrough() {
        let handler = ClosureHandler { request, context in
            Response(status: .accepted, body: Array("\(request.path)|\(context.requestID)".utf8))
        }
        let routed = Request(params: ["DOCUMENT_URI": "/x", "HTTP_X_REQUEST_ID": "rid-1"], body: [])
        let (response, failure) = respond(to: routed, with: handler, log: log)
        #expect(failure == nil)
        #expect(response.status == .accepted)
        #expect(String(decoding: response.body, as: UTF8.self) == "/x|rid-1")
    }

    @Test func thrownHTTPErrorKeepsStatusAndHeaders() throws {
        let handler = ClosureHandler { _, _ in throw HTTPError.methodNotAllowed(allowed: ["GET", "HEAD"]) }
        let (response, failure) = respond(to: request, with: handler, log: log)
        #expect(response.status.code == 405)
        #expect(response.header("Allow") == "GET, HEAD")
        #expect(failure?.code == "method_not_allowed")
        let body = try Self.errorBody(response)
        #expect(body.code == "method_not_allowed")
        #expect(body.requestID == "req-respond")
    }

    @Test func convertibleErrorIsMapped() throws {
        let handler = ClosureHandler { _, _ in throw FakeDatabaseError() }
        let (response, failure) = respond(to: request, with: handler, log: log)
        #expect(response.status == .serviceUnavailable)
        #expect(response.header("Retry-After") == "5")
        #expect(failure?.code == "database_unavailable")
        let body = try Self.errorBody(response)
        #expect(body.code == "database_unavailable")
        #expect(body.message == "Try again later")
    }

    @Test func arbitraryErrorBecomesInternalErrorWithoutLeakingDetail() throws {
        let handler = ClosureHandler { _, _ in throw LeakyError() }
        let (response, failure) = respond(to: request, with: handler, log: log)
        #expect(response.status == .internalServerError)
        let text = String(decoding: response.serialized(requestID: request.requestID), as: UTF8.self)
        #expect(!text.contains("hunter2"))
        #expect(!text.contains("SECRET"))
        let body = try Self.errorBody(response)
        #expect(body.code == "internal_error")
        #expect(body.requestID == "req-respond")
        let mapped = try #require(failure)
        #expect(mapped.code == "internal_error")
        #expect(!(mapped.logDetail ?? "").contains("hunter2"))
        #expect(mapped.logDetail?.contains("LeakyError") == true)
    }
}
