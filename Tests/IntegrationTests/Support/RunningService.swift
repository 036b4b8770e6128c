import Foundation
import HTTPClient

#if canImport(Glibc)
    import Glibc
#endif

/// The real thing for end-to-end tests: route executables from `BIN_DIR` on their own Unix
/// sockets, behind nginx rendered from the project's template on a free loopback port.
final class RunningService {
    let directory: URL
    let port: Int
    private(set) var routes: [String: Process] = [:]
    private var logs: [String: URL] = [:]
    private let nginxConfig: String
    let environment: [String: String]

    /// Set when the service was started with a sandbox: its own nginx server on this port.
    let sandboxPort: Int?

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var sandboxURL: String { "http://127.0.0.1:\(sandboxPort ?? 0)" }
    var socketsDirectory: URL { directory.appendingPathComponent("sockets") }

    init(routes names: [String], databaseURL: String, workers: Int = 2, sandboxDatabaseURL: String? = nil) throws {
        directory = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("casehug-e2e-" + ServiceDatabase.randomSuffix())
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("logs"), withIntermediateDirectories: true)
        let sockets = directory.appendingPathComponent("sockets")
        try FileManager.default.createDirectory(at: sockets, withIntermediateDirectories: true)
        let isRoot = geteuid() == 0
        if isRoot {
            // Only root and nginx's workers (group www-data) may reach the sockets.
            chmod(directory.path, 0o755)
            if let group = getgrnam("www-data") { chown(sockets.path, 0, group.pointee.gr_gid) }
            chmod(sockets.path, 0o750)
        }
        environment = [
            "DATABASE_URL": databaseURL, "CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret,
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
        ]
        port = try Self.freePort()
        sandboxPort = sandboxDatabaseURL == nil ? nil : try Self.freePort()
        nginxConfig = directory.appendingPathComponent("nginx/nginx.conf").path
        do {
            for name in names { try startRoute(name, workers: workers) }
            var render = [
                "--prefix", directory.appendingPathComponent("nginx").path, "--listen", "127.0.0.1:\(port)",
                "--sockets", sockets.path, "--routes", names.joined(separator: " "),
            ]
            if let sandboxDatabaseURL, let sandboxPort {
                try startRoute(
                    "smokeball-sandbox", workers: workers,
                    extraEnvironment: ["SANDBOX_DATABASE_URL": sandboxDatabaseURL])
                render += ["--sandbox-listen", "127.0.0.1:\(sandboxPort)"]
            }
            try Self.runTool(TestEnvironment.renderNginx, render)
            try Self.runTool(
                TestEnvironment.nginx,
                [
                    "-p", directory.appendingPathComponent("nginx").path, "-c", nginxConfig, "-e",
                    directory.appendingPathComponent("nginx/logs/error.log").path,
                ])
            try waitUntilServing()
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    func startRoute(_ name: String, workers: Int = 2, extraEnvironment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEnvironment.binDirectory).appendingPathComponent(name)
        let socket = socketsDirectory.appendingPathComponent("\(name).sock").path
        var arguments = ["--socket", socket, "--workers", String(workers)]
        // The sandbox takes file uploads (nginx allows it 64 MiB too).
        if name == "smokeball-sandbox" { arguments += ["--max-body-bytes", String(64 << 20)] }
        if geteuid() == 0 { arguments += ["--socket-group", "www-data"] }
        process.arguments = arguments
        process.environment = environment.merging(extraEnvironment) { $1 }
        let log = directory.appendingPathComponent("logs/\(name).log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            throw HarnessError(message: "cannot create \(log.path)")
        }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
        routes[name] = process
        logs[name] = log
        try Self.waitFor("socket \(name)") { FileManager.default.fileExists(atPath: socket) }
    }

    /// The JSON lines a route wrote to stderr so far.
    func logLines(_ name: String) -> [String] {
        guard let url = logs[name], let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    func stop() {
        if FileManager.default.fileExists(atPath: nginxConfig) {
            _ = try? Self.runTool(
                TestEnvironment.nginx,
                [
                    "-p", directory.appendingPathComponent("nginx").path, "-c", nginxConfig, "-s", "stop", "-e",
                    directory.appendingPathComponent("nginx/logs/error.log").path,
                ])
        }
        for (_, process) in routes where process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        routes = [:]
        try? FileManager.default.removeItem(at: directory)
    }

    /// Child pids of a route's supervisor (its workers).
    func workerPIDs(_ name: String) -> [Int32] {
        guard let master = routes[name]?.processIdentifier,
            let text = try? String(contentsOfFile: "/proc/\(master)/task/\(master)/children", encoding: .utf8)
        else { return [] }
        return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    func send(
        _ method: String, _ path: String, token: String? = nil, headers: [(String, String)] = [], body: [UInt8] = [],
        contentType: String? = nil, base: String? = nil
    ) throws -> HTTPResponse {
        var all = headers
        if let token { all.append(("Authorization", "Bearer " + token)) }
        if let contentType { all.append(("Content-Type", contentType)) }
        let client = try HTTPClient()
        return try client.send(
            HTTPRequest(method: method, url: (base ?? baseURL) + path, headers: all, body: body, timeout: 15))
    }

    private func waitUntilServing() throws {
        try Self.waitFor("nginx on port \(port)") {
            (try? self.send("GET", "/healthz").status) == 200
        }
    }

    static func waitFor(_ what: String, timeout: Double = 10, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return }
            usleep(20_000)
        }
        throw HarnessError(message: "timed out waiting for \(what)")
    }

    /// Runs a short-lived tool to completion and returns its output. posix_spawn and waitpid
    /// rather than Foundation's Process: nginx daemonizes, and Process left its parent a zombie
    /// that waitUntilExit never noticed.
    /// `environment` replaces the test process's own when given.
    @discardableResult
    static func runTool(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
        let outputPath = NSTemporaryDirectory() + "casehug-tool-" + ServiceDatabase.randomSuffix() + ".log"
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned =
            if let envp { posix_spawn(&pid, path, &actions, nil, argv, envp) } else {
                posix_spawn(&pid, path, &actions, nil, argv, environ)
            }
        guard spawned == 0 else { throw HarnessError(message: "cannot start \(path): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw HarnessError(message: "waitpid failed for \(path)") }
        }
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED and WEXITSTATUS are macros Swift cannot import.
        let exitedCleanly = status & 0x7f == 0 && (status >> 8) & 0xff == 0
        guard exitedCleanly else { throw HarnessError(message: "\(path) failed (status \(status)): \(text)") }
        return text
    }

    /// A loopback TCP port nothing listens on right now.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw HarnessError(message: "cannot bind a probe socket") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

extension HTTPResponse {
    var jsonObject: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }

    var errorCode: String? { (jsonObject["error"] as? [String: Any])?["code"] as? String }
}
