import Basics
import Foundation
import HTTPClient
import Testing

private let server = TestServer.shared
private let allBytes = [UInt8]((0...255).map { UInt8($0) })

@Suite struct HTTPClientTests {
    @Test(arguments: ["GET", "POST", "PUT", "PATCH", "DELETE"])
    func methodHeadersAndBinaryBodyAreSentExactly(method: String) throws {
        let client = try HTTPClient()
        let response = try client.send(
            HTTPRequest(
                method: method, url: server.base + "/echo?x=1",
                headers: [("X-Test", "abc def"), ("Authorization", "Bearer t0k"), ("X-Empty", "")],
                body: allBytes))
        #expect(response.status == 200)
        let echo = try Echo(response.body)
        #expect(echo.method == method)
        #expect(echo.path == "/echo")
        #expect(echo.query == "x=1")
        #expect(echo.bodyBytes == allBytes)
        #expect(echo.header("X-Test") == ["abc def"])
        #expect(echo.header("Authorization") == ["Bearer t0k"])
        #expect(echo.header("X-Empty") == [""])
        #expect(echo.header("Content-Length") == ["256"])
        #expect(echo.header("Expect").isEmpty)
    }

    @Test func getWithoutBodySendsNoContentLength() throws {
        let response = try HTTPClient().send(HTTPRequest(url: server.base + "/echo"))
        let echo = try Echo(response.body)
        #expect(echo.method == "GET")
        #expect(echo.header("Content-Length").isEmpty)
        #expect(echo.bodyBytes.isEmpty)
    }

    @Test(arguments: ["PUT", "PATCH", "POST"])
    func emptyBodyStillSendsZeroContentLength(method: String) throws {
        let response = try HTTPClient().send(HTTPRequest(method: method, url: server.base + "/echo"))
        let echo = try Echo(response.body)
        #expect(echo.method == method)
        #expect(echo.header("Content-Length") == ["0"])
    }

    @Test func largeBodyIsSentWithoutExpectContinue() throws {
        let body = [UInt8]((0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let response = try HTTPClient().send(HTTPRequest(method: "POST", url: server.base + "/echo", body: body))
        let echo = try Echo(response.body)
        #expect(echo.bodyBytes == body)
        #expect(echo.header("Expect").isEmpty)  // else libcurl waits for 100 Continue
    }

    @Test func headHasHeadersButNoBody() throws {
        let response = try HTTPClient().send(HTTPRequest(method: "HEAD", url: server.base + "/echo"))
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        #expect(Int(response.header("content-length") ?? "0") ?? 0 > 0)
    }

    @Test func redirectIsNotFollowedAndLocationIsVisible() throws {
        let response = try HTTPClient().send(HTTPRequest(url: server.base + "/redirect"))
        #expect(response.status == 302)
        #expect(response.header("Location") == "/echo")
        #expect(response.header("location") == "/echo")
        #expect(response.body.isEmpty)
    }

    @Test(arguments: [200, 201, 404, 429, 500, 503])
    func statusCodesPassThrough(status: Int) throws {
        let response = try HTTPClient().send(HTTPRequest(url: server.base + "/status/\(status)"))
        #expect(response.status == status)
        #expect(response.body == Array("status \(status)".utf8))
        #expect(response.header("Retry-After") == (status == 429 ? "7" : nil))
    }

    @Test func onlyFinalResponseHeadersAreKept() throws {
        let response = try HTTPClient().send(HTTPRequest(url: server.base + "/interim"))
        #expect(response.status == 200)
        #expect(response.header("Link") == nil)
        #expect(response.headers.contains { $0.0 == "X-Final" && $0.1 == "yes" })  // name as received
        #expect(response.body == Array("final".utf8))
    }

    @Test func jsonDecodesBody() throws {
        let response = try HTTPClient().send(HTTPRequest(url: server.base + "/echo?a=b"))
        let object = try #require(try response.json() as? [String: Any])
        #expect(object["method"] as? String == "GET")
        #expect(object["query"] as? String == "a=b")
        #expect(throws: (any Error).self) { try HTTPResponse(status: 200, headers: [], body: [0x7B]).json() }
    }

    @Test func timeoutIsReported() throws {
        let started = Date()
        let error = #expect(throws: HTTPClientError.self) {
            try HTTPClient().send(HTTPRequest(url: server.base + "/slow?ms=3000", timeout: 0.3))
        }
        #expect(error?.code == .timedOut)
        #expect(error?.curlCode == 28)
        #expect(error?.isRetryable == true)
        #expect(Date().timeIntervalSince(started) < 2)
    }

    @Test func connectionRefusedIsCouldNotConnect() throws {
        let url = "http://127.0.0.1:\(TestServer.closedPort())/echo?access_token=secret123"
        let error = #expect(throws: HTTPClientError.self) { try HTTPClient().send(HTTPRequest(url: url)) }
        #expect(error?.code == .couldNotConnect)
        #expect(error?.curlCode == 7)
        #expect(error?.isRetryable == true)
        // The description must never leak the URL (query strings may carry tokens).
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text == "HTTPClientError.couldNotConnect (curl 7)")
        #expect(!text.contains("secret123") && !text.contains("127.0.0.1"))
    }

    @Test func oversizeBodyIsRejected() throws {
        let client = try HTTPClient(maxResponseBytes: 100_000)
        let error = #expect(throws: HTTPClientError.self) {
            try client.send(HTTPRequest(url: server.base + "/big?bytes=1000000"))
        }
        #expect(error?.code == .responseTooLarge)
        #expect(error?.isRetryable == false)
        // At the limit exactly is fine, and the same handle still works after the abort.
        let exact = try client.send(HTTPRequest(url: server.base + "/big?bytes=100000"))
        #expect(exact.body.count == 100_000)
    }

    @Test func closedWithoutAnswerIsTransportError() throws {
        let error = #expect(throws: HTTPClientError.self) {
            try HTTPClient().send(HTTPRequest(url: server.base + "/close"))
        }
        #expect(error?.code == .transport)
        #expect(error?.curlCode == 52)  // CURLE_GOT_NOTHING
        #expect(error?.isRetryable == true)
    }

    @Test(arguments: ["ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://127.0.0.1/", "http://[::1/"])
    func unsupportedOrMalformedURLIsInvalidURL(url: String) throws {
        let error = #expect(throws: HTTPClientError.self) { try HTTPClient().send(HTTPRequest(url: url)) }
        #expect(error?.code == .invalidURL)
        #expect(error?.isRetryable == false)
    }

    @Test(arguments: [
        HTTPRequest(url: "http://127.0.0.1/", headers: [("X-A", "v\r\nX-Injected: 1")]),
        HTTPRequest(url: "http://127.0.0.1/", headers: [("X-A\nB", "v")]),
        HTTPRequest(url: "http://127.0.0.1/", headers: [("X-A:", "v")]),
        HTTPRequest(method: "GET / HTTP/1.1\r\n", url: "http://127.0.0.1/"),
        HTTPRequest(url: "http://127.0.0.1/\0evil"),
    ])
    func headInjectionIsRejected(request: HTTPRequest) throws {
        let error = #expect(throws: HTTPClientError.self) { try HTTPClient().send(request) }
        #expect(error?.code == .invalidRequest)
    }

    @Test func handleIsReusedWithKeepAlive() throws {
        let client = try HTTPClient()
        var peerPorts = Set<Int>()
        for index in 0..<50 {
            let response = try client.send(
                HTTPRequest(
                    method: index.isMultiple(of: 2) ? "GET" : "POST", url: server.base + "/echo?i=\(index)",
                    body: index.isMultiple(of: 2) ? [] : [UInt8(index)]))
            let echo = try Echo(response.body)
            #expect(echo.query == "i=\(index)")
            #expect(echo.bodyBytes == (index.isMultiple(of: 2) ? [] : [UInt8(index)]))
            peerPorts.insert(try #require(echo.peerPort))
        }
        #expect(peerPorts.count == 1)  // one TCP connection served all 50 requests
    }

    @Test func unixSocketTransport() throws {
        let response = try HTTPClient().send(
            HTTPRequest(
                method: "POST", url: "http://localhost/echo?via=unix", body: [1, 2, 3],
                unixSocketPath: server.socketPath))
        let echo = try Echo(response.body)
        #expect(echo.query == "via=unix")
        #expect(echo.bodyBytes == [1, 2, 3])
        #expect(echo.peerPort == nil)  // proves it did not go over TCP
    }

    @Test func queryBuiltWithURLQueryRoundTripsThroughServer() throws {
        let pairs = [("q", "a b&c=d"), ("name", "Zoë 🚀"), ("plus", "1+1"), ("empty", "")]
        let response = try HTTPClient().send(HTTPRequest(url: URLQuery.build(base: server.base + "/echo", pairs)))
        let echo = try Echo(response.body)
        #expect(echo.params == pairs.map { [$0.0, $0.1] })
    }
}

@Suite struct EncodingTests {
    @Test(arguments: [
        ([("a", "b")], "a=b"),
        ([("q", "hello world")], "q=hello%20world"),
        ([("k", "a&b=c")], "k=a%26b%3Dc"),
        ([("name", "Zoë 🚀")], "name=Zo%C3%AB%20%F0%9F%9A%80"),
        ([("redirect_uri", "https://x.test/cb?x=1")], "redirect_uri=https%3A%2F%2Fx.test%2Fcb%3Fx%3D1"),
        ([("a", "-._~"), ("b", "+/%")], "a=-._~&b=%2B%2F%25"),
        ([("a b", "")], "a%20b="),
        ([], ""),
    ])
    func formEncoding(pairs: [(String, String)], expected: String) {
        #expect(FormURLEncoding.encode(pairs) == expected)
    }

    @Test(arguments: [
        ("https://h.test/p", [("a", "1"), ("b", "x y")], "https://h.test/p?a=1&b=x%20y"),
        ("https://h.test/p?z=0", [("a", "1")], "https://h.test/p?z=0&a=1"),
        ("https://h.test/p?", [("a", "&=")], "https://h.test/p?a=%26%3D"),
        ("https://h.test/p", [], "https://h.test/p"),
        ("https://h.test/p#frag", [("a", "é")], "https://h.test/p?a=%C3%A9#frag"),
    ])
    func queryBuilding(base: String, pairs: [(String, String)], expected: String) {
        #expect(URLQuery.build(base: base, pairs) == expected)
    }
}
