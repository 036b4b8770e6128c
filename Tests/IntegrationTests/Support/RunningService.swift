import Foundation
import HTTPClient
import TestSupport

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

    /// `routeEnvironment` adds settings for the routes (not the sandbox), given the service's
    /// and the sandbox's base URLs.
    init(
        routes names: [String], databaseURL: String, workers: Int = 2, sandboxDatabaseURL: String? = nil,
        routeEnvironment: (_ baseURL: String, _ sandboxURL: String?) -> [String: String] = { _, _ in [:] }
    ) throws {
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
        port = try Processes.freePort()
        sandboxPort = sandboxDatabaseURL == nil ? nil : try Processes.freePort()
        environment = [
            "DATABASE_URL": databaseURL, "CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret,
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
        ].merging(
            routeEnvironment("http://127.0.0.1:\(port)", sandboxPort.map { "http://127.0.0.1:\($0)" })
        ) { $1 }
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
                    extraEnvironment: ["SANDBOX_DATABASE_URL": sandboxDatabaseURL], inheritRouteEnvironment: false)
                render += ["--sandbox-listen", "127.0.0.1:\(sandboxPort)"]
            }
            try Processes.runTool(TestEnvironment.renderNginx, render)
            try Processes.runTool(
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

    func startRoute(
        _ name: String, workers: Int = 2, extraEnvironment: [String: String] = [:], inheritRouteEnvironment: Bool = true
    ) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEnvironment.binDirectory).appendingPathComponent(name)
        let socket = socketsDirectory.appendingPathComponent("\(name).sock").path
        var arguments = ["--socket", socket, "--workers", String(workers)]
        // The sandbox takes file uploads (nginx allows it 64 MiB too).
        if name == "smokeball-sandbox" { arguments += ["--max-body-bytes", String(64 << 20)] }
        if geteuid() == 0 { arguments += ["--socket-group", "www-data"] }
        process.arguments = arguments
        let base =
            inheritRouteEnvironment
            ? environment : environment.filter { ["DATABASE_URL", "CASEHUG_JWT_SECRET", "PATH"].contains($0.key) }
        process.environment = base.merging(extraEnvironment) { $1 }
        let log = directory.appendingPathComponent("logs/\(name).log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            throw HarnessError("cannot create \(log.path)")
        }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
        routes[name] = process
        logs[name] = log
        try Processes.waitFor("socket \(name)") { FileManager.default.fileExists(atPath: socket) }
    }

    /// A second instance of a running route, as a second host would run it: its own supervisor
    /// on `NAME-2.sock` (logs and pid under `NAME-2`), and nginx's location for the route turned
    /// into one upstream over both sockets (reloaded; returns once the new workers serve). Each
    /// instance also answers alone at `instancePath(name, 1 or 2)`, for a test that must reach both.
    func addReplica(_ name: String, workers: Int = 2) throws {
        let replica = "\(name)-2"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEnvironment.binDirectory).appendingPathComponent(name)
        let socket = socketsDirectory.appendingPathComponent("\(replica).sock").path
        var arguments = ["--socket", socket, "--workers", String(workers)]
        if geteuid() == 0 { arguments += ["--socket-group", "www-data"] }
        process.arguments = arguments
        process.environment = environment
        let log = directory.appendingPathComponent("logs/\(replica).log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            throw HarnessError("cannot create \(log.path)")
        }
        let handle = try FileHandle(forWritingTo: log)
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
        routes[replica] = process
        logs[replica] = log
        try Processes.waitFor("socket \(replica)") { FileManager.default.fileExists(atPath: socket) }

        let first = socketsDirectory.appendingPathComponent("\(name).sock").path
        let upstream = "casehug_\(name.replacingOccurrences(of: "-", with: "_"))"
        var config = try String(contentsOfFile: nginxConfig, encoding: .utf8)
        let pass = "fastcgi_pass unix:\(first);"
        guard config.contains(pass), let server = config.range(of: "\n    server {") else {
            throw HarnessError("no location for \(name) in \(nginxConfig)")
        }
        config.insert(
            contentsOf:
                "\n    upstream \(upstream) {\n        server unix:\(first);\n        server unix:\(socket);\n    }\n",
            at: server.lowerBound)
        config = config.replacingOccurrences(of: pass, with: "fastcgi_pass \(upstream);")
        guard let health = config.range(of: "        location = /healthz {") else {
            throw HarnessError("no /healthz location in \(nginxConfig)")
        }
        config.insert(
            contentsOf: [first, socket].enumerated().map { index, path in
                "        location = \(Self.instancePath(name, index + 1)) {\n            fastcgi_pass unix:\(path);\n        }\n"
            }.joined(),
            at: health.lowerBound)
        try config.write(toFile: nginxConfig, atomically: true, encoding: .utf8)
        let prefix = directory.appendingPathComponent("nginx").path
        let pidFile = prefix + "/nginx.pid"
        let master = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        let before = Processes.childPIDs(of: pid_t(master) ?? 0)
        try Processes.runTool(
            TestEnvironment.nginx,
            ["-p", prefix, "-c", nginxConfig, "-s", "reload", "-e", prefix + "/logs/error.log"])
        // Reloaded once every worker nginx had before is gone: only new ones answer.
        try Processes.waitFor("nginx to reload") {
            let now = Processes.childPIDs(of: pid_t(master) ?? 0)
            return !now.isEmpty && now.isDisjoint(with: before)
        }
        try waitUntilServing()
    }

    /// Where one instance of a route with a replica answers alone (see `addReplica`).
    static func instancePath(_ name: String, _ instance: Int) -> String { "/_instances/\(name)/\(instance)" }

    /// The JSON lines a route wrote to stderr so far.
    func logLines(_ name: String) -> [String] {
        guard let url = logs[name], let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    func stop() {
        if FileManager.default.fileExists(atPath: nginxConfig) {
            _ = try? Processes.runTool(
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
        try Processes.waitFor("nginx on port \(port)") {
            (try? self.send("GET", "/healthz").status) == 200
        }
    }
}

extension HTTPResponse {
    var jsonObject: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }

    var errorCode: String? { (jsonObject["error"] as? [String: Any])?["code"] as? String }
}
