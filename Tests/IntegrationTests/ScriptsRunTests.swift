import Foundation
import PostgreSQL
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `scripts/run` as a developer runs it, on its own ports and data directory, with the
/// executables scripts/test built (no release build).
@Suite struct ScriptsRunTests {
    /// Every distinct command line seen in /proc while it watches. Secrets that showed in a
    /// process list would do so for milliseconds (`env NAME=VALUE exe`, `curl -H`), so it scans
    /// without pausing.
    final class CommandLineWatcher: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: Set<String> = []
        private var stopping = false
        private let finished = DispatchSemaphore(value: 0)

        func start() {
            Thread.detachNewThread {
                while !self.isStopping { self.scan() }
                self.finished.signal()
            }
        }

        var isStopping: Bool {
            lock.lock()
            defer { lock.unlock() }
            return stopping
        }

        /// Stops and returns what was seen.
        func stop() -> Set<String> {
            lock.lock()
            stopping = true
            lock.unlock()
            finished.wait()
            scan()
            lock.lock()
            defer { lock.unlock() }
            return seen
        }

        func scan() {
            guard let directory = opendir("/proc") else { return }
            defer { closedir(directory) }
            var found: [String] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                guard let first = name.utf8.first, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else {
                    continue
                }
                let fd = open("/proc/\(name)/cmdline", O_RDONLY)
                guard fd >= 0 else { continue }
                let count = read(fd, &buffer, buffer.count)
                close(fd)
                guard count > 0 else { continue }
                found.append(String(decoding: buffer[..<count].map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self))
            }
            lock.lock()
            seen.formUnion(found)
            lock.unlock()
        }
    }

    /// KEY=VALUE lines of an env file.
    static func readEnvFile(_ path: String) throws -> [String: String] {
        var values: [String: String] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return values
    }

    @Test func scriptsRunPutsNoSecretOnAnyCommandLineAndGivesDemoEnvTheAppRole() throws {
        let data = NSTemporaryDirectory() + "casehug-run-" + ServiceDatabase.randomSuffix()
        let script = TestEnvironment.repositoryRoot.appendingPathComponent("scripts/run").path
        let environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": NSTemporaryDirectory(),
            "PORT": String(try RunningService.freePort()), "SANDBOX_PORT": String(try RunningService.freePort()),
            "RUN_PG_PORT": String(try RunningService.freePort()), "CASEHUG_DATA_DIR": data,
            "CASEHUG_BIN_DIR": TestEnvironment.binDirectory,
        ]
        let watcher = CommandLineWatcher()
        watcher.start()
        var stopped = false
        defer {
            if !stopped { _ = watcher.stop() }
            _ = try? RunningService.runTool(script, ["--stop"], environment: environment)
            try? FileManager.default.removeItem(atPath: data)
        }
        let started = Date()
        try RunningService.runTool(script, ["--detach"], environment: environment)
        print(
            "scripts/run --detach (debug build, fresh cluster): \(String(format: "%.1f", Date().timeIntervalSince(started))) s"
        )
        let secrets = try Self.readEnvFile(data + "/secrets.env")
        let demo = try Self.readEnvFile(data + "/demo.env")

        // demo.env's DATABASE_URL is what the routes read: the app role, which tenancy binds.
        // The superuser's URL has a name nothing reads by accident.
        func role(_ url: String?) throws -> (name: String, isSuperuser: Bool) {
            let row = try Connection(url: try #require(url)).execute(
                "SELECT current_user AS name, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).single()
            return (try row.string("name"), try row.bool("rolsuper"))
        }
        let app = try role(demo["DATABASE_URL"])
        #expect(app.name == "casehug_app" && !app.isSuperuser)
        #expect(try role(demo["SUPERUSER_DATABASE_URL"]).isSuperuser)

        // While it is up, and through its stop.
        watcher.scan()
        try RunningService.runTool(script, ["--stop"], environment: environment)
        let seen = watcher.stop()
        stopped = true

        var secretValues = Array(secrets.values)
        for (key, value) in demo
        where ["TOKEN", "SECRET", "PASSWORD", "KEY", "DATABASE_URL"].contains(where: key.contains) {
            secretValues.append(value)
        }
        #expect(secretValues.count >= 12)
        #expect(secretValues.allSatisfy { $0.count >= 16 })
        // The watcher did see the service: its routes name their sockets.
        #expect(seen.contains { $0.contains("--socket") && $0.contains(data) })
        for value in secretValues {
            let shown = seen.filter { $0.contains(value) }
            #expect(
                shown.isEmpty,
                "a secret was on the command line of: \(shown.map { $0.replacingOccurrences(of: value, with: "<secret>") })"
            )
        }
    }
}
