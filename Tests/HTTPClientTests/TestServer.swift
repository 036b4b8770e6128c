import Foundation

/// The python fixture server, started once per test process on first use.
struct TestServer: Sendable {
    let port: Int
    let socketPath: String

    var base: String { "http://127.0.0.1:\(port)" }

    static let shared: TestServer = launch()

    private static func launch() -> TestServer {
        // Located next to this file rather than via Bundle resources, so the test target
        // needs no `resources:` entry in Package.swift.
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/echo_server.py").path
        let socketPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("httpclient-tests-\(getpid()).sock").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, socketPath]
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        do {
            try process.run()
        } catch {
            fatalError("cannot start python3 test server: \(error)")
        }
        // The server exits when its stdin hits EOF. The write end is deliberately never
        // closed (leaked below), so the kernel closes it when this test process exits.
        _ = Unmanaged.passRetained(stdin)
        _ = Unmanaged.passRetained(process)

        var line: [UInt8] = []
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = stdout.fileHandleForReading.availableData
            guard !chunk.isEmpty else { fatalError("test server exited before printing its port") }
            line += chunk
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let port = Int(text) else { fatalError("bad port line from test server: \(text)") }
        return TestServer(port: port, socketPath: socketPath)
    }

    /// A TCP port on 127.0.0.1 with nothing listening: bound to get a free number, then closed.
    static func closedPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length)
                return getsockname(fd, pointer, &length)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// The `/echo` endpoint's JSON answer.
struct Echo: Decodable {
    let method: String
    let path: String
    let query: String
    let params: [[String]]
    let headers: [[String]]
    let body: String
    let peerPort: Int?

    var bodyBytes: [UInt8] { [UInt8](Data(base64Encoded: body) ?? Data()) }

    func header(_ name: String) -> [String] {
        headers.filter { $0[0].caseInsensitiveCompare(name) == .orderedSame }.map { $0[1] }
    }

    init(_ body: [UInt8]) throws {
        self = try JSONDecoder().decode(Echo.self, from: Data(body))
    }
}
