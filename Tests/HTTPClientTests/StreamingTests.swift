import Foundation
import HTTPClient
import Testing

private let server = TestServer.shared

/// A scratch file of `bytes` (removed with the directory when the test ends).
private struct ScratchFile {
    let path: String

    init(_ bytes: [UInt8] = []) throws {
        path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("httpclient-stream-\(UUID().uuidString)").path
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw CocoaError(.fileWriteUnknown)
        }
    }

    func reading() throws -> FileHandle { try #require(FileHandle(forReadingAtPath: path)) }
    func updating() throws -> FileHandle { try #require(FileHandle(forUpdatingAtPath: path)) }
    func contents() throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }
    func size() throws -> Int { (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1 }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

private func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
}

/// What `PUT /store/KEY` answers.
private struct Stored: Decodable {
    let method: String
    let bytes: Int
    let headers: [[String]]

    func header(_ name: String) -> [String] {
        headers.filter { $0[0].caseInsensitiveCompare(name) == .orderedSame }.map { $0[1] }
    }
}

@Suite struct StreamingTests {
    @Test("a file is PUT as the body byte for byte, with its size as Content-Length and an empty Content-Type kept")
    func uploadSendsTheWholeFile() throws {
        let original = randomBytes(3 << 20 + 17)
        let file = try ScratchFile(original)
        defer { file.remove() }
        let key = UUID().uuidString
        let client = try HTTPClient()
        let response = try client.upload(
            HTTPRequest(method: "PUT", url: server.base + "/store/" + key, headers: [("Content-Type", "")]),
            from: try file.reading())
        #expect(response.status == 200)
        let stored = try JSONDecoder().decode(Stored.self, from: Data(response.body))
        #expect(stored.method == "PUT")
        #expect(stored.bytes == original.count)
        #expect(stored.header("Content-Length") == [String(original.count)])
        #expect(stored.header("Content-Type") == [""])
        #expect(stored.header("Expect").isEmpty)
        let back = try client.send(HTTPRequest(url: server.base + "/store/" + key))
        #expect(back.body == original)
    }

    @Test("an upload reads the file from its start whatever the handle's position, and other methods are kept")
    func uploadIgnoresThePositionAndKeepsTheMethod() throws {
        let original = randomBytes(100_000)
        let file = try ScratchFile(original)
        defer { file.remove() }
        let handle = try file.reading()
        try handle.seek(toOffset: 60_000)
        let key = UUID().uuidString
        let client = try HTTPClient()
        let response = try client.upload(
            HTTPRequest(method: "POST", url: server.base + "/store/" + key), from: handle)
        let stored = try JSONDecoder().decode(Stored.self, from: Data(response.body))
        #expect(stored.method == "POST")
        #expect(stored.bytes == original.count)
        #expect(try handle.offset() == 60_000)
        #expect(try client.send(HTTPRequest(url: server.base + "/store/" + key)).body == original)
    }

    @Test("after a streamed transfer the same handle sends in-memory requests as before")
    func inMemoryRequestsAfterStreaming() throws {
        let file = try ScratchFile(randomBytes(10_000))
        defer { file.remove() }
        let client = try HTTPClient()
        _ = try client.upload(HTTPRequest(method: "PUT", url: server.base + "/store/reset"), from: try file.reading())
        let post = try client.send(HTTPRequest(method: "POST", url: server.base + "/echo", body: [1, 2, 3]))
        let echo = try Echo(post.body)
        #expect(echo.method == "POST")
        #expect(echo.bodyBytes == [1, 2, 3])
        let get = try Echo(try client.send(HTTPRequest(url: server.base + "/echo")).body)
        #expect(get.method == "GET")
        #expect(get.header("Content-Length").isEmpty)
        _ = try client.download(HTTPRequest(url: server.base + "/big?bytes=1000"), to: try file.updating())
        let small = try HTTPClient(maxResponseBytes: 100)
        _ = try small.download(HTTPRequest(url: server.base + "/big?bytes=1000"), to: try file.updating())
        // The in-memory limit applies again once the download is over.
        #expect(throws: HTTPClientError(code: .responseTooLarge, curlCode: 23)) {
            try small.send(HTTPRequest(url: server.base + "/big?bytes=1000"))
        }
    }

    @Test("a download writes a 2xx body to the file, not to memory, beyond the in-memory limit")
    func downloadGoesToTheFile() throws {
        let file = try ScratchFile(Array(repeating: 7, count: 50_000))
        defer { file.remove() }
        let client = try HTTPClient(maxResponseBytes: 64 << 10)
        let response = try client.download(
            HTTPRequest(url: server.base + "/big?bytes=\(20 << 20)"), to: try file.updating())
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        #expect(try file.size() == 20 << 20)
        #expect(try file.contents().allSatisfy { $0 == UInt8(ascii: "x") })
    }

    @Test("a download of uploaded bytes is identical to them, and replaces what the file held")
    func downloadRoundTrip() throws {
        let original = randomBytes(2 << 20 + 3)
        let source = try ScratchFile(original)
        let target = try ScratchFile(randomBytes(5 << 20))
        defer {
            source.remove()
            target.remove()
        }
        let key = UUID().uuidString
        let client = try HTTPClient()
        _ = try client.upload(
            HTTPRequest(method: "PUT", url: server.base + "/store/" + key), from: try source.reading())
        let response = try client.download(HTTPRequest(url: server.base + "/store/" + key), to: try target.updating())
        #expect(response.status == 200)
        #expect(try target.contents() == original)
    }

    @Test("a download answered with an error keeps its body in memory and leaves the file empty")
    func downloadErrorBodyStaysInMemory() throws {
        let file = try ScratchFile(Array("old contents".utf8))
        defer { file.remove() }
        let response = try HTTPClient().download(
            HTTPRequest(url: server.base + "/status/404"), to: try file.updating())
        #expect(response.status == 404)
        #expect(response.body == Array("status 404".utf8))
        #expect(try file.size() == 0)
    }

    @Test("a stalled download ends as timed out under the stall limit, long before the overall timeout")
    func stalledDownloadTimesOut() throws {
        let file = try ScratchFile()
        defer { file.remove() }
        let client = try HTTPClient()
        // libcurl averages the speed over the last few seconds: half the body at once, then
        // nothing, falls under 100 kB/s within a second or two.
        let request = HTTPRequest(url: server.base + "/stall?bytes=100000&ms=4000", timeout: 120)
        let error = #expect(throws: HTTPClientError.self) {
            try client.download(
                request, to: try file.updating(), stall: StallLimit(bytesPerSecond: 100_000, seconds: 1))
        }
        #expect(error?.code == .timedOut)
        #expect(error?.isRetryable == true)
        // The same pause under the standard limit is no stall: the whole body arrives.
        let response = try client.download(request, to: try file.updating())
        #expect(response.status == 200)
        #expect(try file.size() == 100_000)
    }

    @Test("a download cut off mid-body is a retryable transport error")
    func truncatedDownloadIsTransportError() throws {
        let file = try ScratchFile()
        defer { file.remove() }
        let error = #expect(throws: HTTPClientError.self) {
            try HTTPClient().download(HTTPRequest(url: server.base + "/truncate?bytes=100000"), to: try file.updating())
        }
        #expect(error?.code == .transport)
        #expect(error?.curlCode == 18)  // CURLE_PARTIAL_FILE
        #expect(error?.isRetryable == true)
    }

    @Test("an upload from something that is not a regular file, or a download to a read-only one, is localFile")
    func localFileFailures() throws {
        let pipe = Pipe()
        let upload = #expect(throws: HTTPClientError.self) {
            try HTTPClient().upload(
                HTTPRequest(method: "PUT", url: server.base + "/store/pipe"), from: pipe.fileHandleForReading)
        }
        #expect(upload?.code == .localFile)
        #expect(upload?.isRetryable == false)
        let file = try ScratchFile(Array("kept".utf8))
        defer { file.remove() }
        // A regular file whose reads fail mid-transfer (opened for writing only).
        let unreadable = #expect(throws: HTTPClientError.self) {
            try HTTPClient().upload(
                HTTPRequest(method: "PUT", url: server.base + "/store/unreadable"),
                from: try #require(FileHandle(forWritingAtPath: file.path)))
        }
        #expect(unreadable?.code == .localFile)
        let download = #expect(throws: HTTPClientError.self) {
            try HTTPClient().download(HTTPRequest(url: server.base + "/big?bytes=10"), to: try file.reading())
        }
        #expect(download?.code == .localFile)
        #expect(try file.contents() == Array("kept".utf8))
    }

    @Test("an upload with an in-memory body as well is refused")
    func uploadWithBodyIsInvalid() throws {
        let file = try ScratchFile([1])
        defer { file.remove() }
        let error = #expect(throws: HTTPClientError.self) {
            try HTTPClient().upload(
                HTTPRequest(method: "PUT", url: server.base + "/store/x", body: [2]), from: try file.reading())
        }
        #expect(error?.code == .invalidRequest)
    }
}
