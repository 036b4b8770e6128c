import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Locates the built `hello` executable and the `cgi-fcgi` client.
enum RuntimeTools {
    static func hello() throws -> URL {
        var directories: [URL] = []
        if let binDir = ProcessInfo.processInfo.environment["BIN_DIR"], !binDir.isEmpty {
            directories.append(URL(fileURLWithPath: binDir))
        }
        var starts = [Bundle.main.bundleURL, URL(fileURLWithPath: CommandLine.arguments[0])]
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            starts.append(URL(fileURLWithPath: executable))
        }
        // The test bundle sits in the build products directory (on macOS inside `X.xctest/Contents/MacOS`).
        for start in starts {
            var directory = start.standardizedFileURL
            for _ in 0..<4 {
                directories.append(directory)
                directory = directory.deletingLastPathComponent()
            }
        }
        for directory in directories {
            let candidate = directory.appendingPathComponent("hello")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory),
                !isDirectory.boolValue,
                FileManager.default.isExecutableFile(atPath: candidate.path)
            {
                return candidate
            }
        }
        throw HarnessError(
            "hello executable not found (set BIN_DIR or run `swift build --build-tests`); looked in "
                + directories.map(\.path).joined(separator: ", "))
    }

    static func cgiFCGI() throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(directory)/cgi-fcgi"
            if FileManager.default.isExecutableFile(atPath: candidate) { return URL(fileURLWithPath: candidate) }
        }
        throw HarnessError("cgi-fcgi not found: install Debian package libfcgi-bin")
    }
}

/// Calls `body` with `path` as a `sockaddr_un` and its size (for bind and connect).
func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: path.utf8)
        raw[path.utf8.count] = 0
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// A Unix socket bound at `path` by this test process (another "instance"), listening or not.
final class TestSocket {
    let fd: Int32

    init(path: String, listening: Bool) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed (errno \(errno))") }
        let bound = withUnixAddress(path) { bind(fd, $0, $1) }
        guard bound == 0, !listening || listen(fd, 4) == 0 else {
            close(fd)
            throw HarnessError("bind/listen \(path) failed (errno \(errno))")
        }
    }

    deinit { close(fd) }
}

/// A `hello` master process with its stderr captured to a file.
final class HelloProcess {
    let directory: URL
    let socketPath: String
    let stderrURL: URL
    var stdoutURL: URL { directory.appendingPathComponent("stdout.log") }
    let process = Process()

    init(
        arguments: [String]? = nil, workers: Int = 2, extraArguments: [String] = [],
        environment: [String: String] = [:]
    ) throws {
        directory = try Processes.temporaryDirectory(prefix: "fcgi-test")
        socketPath = directory.appendingPathComponent("hello.sock").path
        stderrURL = directory.appendingPathComponent("stderr.log")
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = try RuntimeTools.hello()
        process.arguments = arguments ?? ["--socket", socketPath, "--workers", String(workers)] + extraArguments
        process.environment = environment.merging(["PATH": "/usr/bin:/bin"]) { _, path in path }
        process.standardInput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
    }

    var pid: pid_t { process.processIdentifier }

    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }

    /// Every stderr line parsed as a JSON object; a line that is not one is reported as `nil`.
    var logLines: [(line: String, object: [String: Any]?)] {
        stderr.split(separator: "\n").map { line in
            (String(line), try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
    }

    func events(_ name: String) -> [[String: Any]] {
        logLines.compactMap(\.object).filter { $0["event"] as? String == name }
    }

    /// Waits until the socket exists and every worker has been forked.
    func waitUntilReady(workers: Int = 2) async throws {
        let socketReady = await Processes.poll(.seconds(5)) { FileManager.default.fileExists(atPath: socketPath) }
        guard socketReady else {
            throw HarnessError("socket \(socketPath) did not appear; stderr: \(stderr)")
        }
        let workersReady = await Processes.poll(.seconds(5)) { Processes.childPIDs(of: pid).count == workers }
        guard workersReady else { throw HarnessError("workers did not start; stderr: \(stderr)") }
    }

    func waitForExit(_ timeout: Duration) async -> Bool {
        await Processes.poll(timeout) { !process.isRunning }
    }

    /// Stops the master and its workers whatever state they are in, and removes the directory.
    func terminate() async {
        if process.isRunning {
            let workers = Processes.childPIDs(of: pid)
            kill(pid, SIGTERM)
            if !(await waitForExit(.seconds(3))) {
                for worker in workers.union(Processes.childPIDs(of: pid)) { kill(worker, SIGKILL) }
                kill(pid, SIGKILL)
                _ = await waitForExit(.seconds(5))
            }
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// One FastCGI exchange through `cgi-fcgi -bind -connect`, with the params as its whole environment.
struct FastCGIExchange {
    let exitStatus: Int32
    let output: [UInt8]

    var text: String { String(decoding: output, as: UTF8.self) }

    var parsed: SerializedResponse? { try? SerializedResponse(output) }

    static func send(
        socket: String, params: [String: String], body: [UInt8] = [], in directory: URL
    ) async throws -> FastCGIExchange {
        let id = UUID().uuidString
        let input = directory.appendingPathComponent("in-\(id)")
        let output = directory.appendingPathComponent("out-\(id)")
        defer {
            try? FileManager.default.removeItem(at: input)
            try? FileManager.default.removeItem(at: output)
        }
        try Data(body).write(to: input)
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let client = Process()
        client.executableURL = try RuntimeTools.cgiFCGI()
        client.arguments = ["-bind", "-connect", socket]
        var environment = params
        if environment["CONTENT_LENGTH"] == nil { environment["CONTENT_LENGTH"] = String(body.count) }
        client.environment = environment
        client.standardInput = try FileHandle(forReadingFrom: input)
        client.standardOutput = try FileHandle(forWritingTo: output)
        client.standardError = FileHandle.nullDevice
        try client.run()
        guard await Processes.poll(.seconds(15), { !client.isRunning }) else {
            kill(client.processIdentifier, SIGKILL)
            _ = await Processes.poll(.seconds(2)) { !client.isRunning }
            throw HarnessError("cgi-fcgi did not finish within 15 s")
        }
        return FastCGIExchange(
            exitStatus: client.terminationStatus, output: Array(try Data(contentsOf: output)))
    }
}
