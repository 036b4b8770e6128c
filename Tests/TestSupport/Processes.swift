import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A test harness could not set up or observe what it runs.
public struct HarnessError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Starting, watching and waiting for the processes the end-to-end tests run (routes, nginx,
/// the sandbox, `hello`), shared by every harness.
public enum Processes {
    /// A fresh, short temporary directory: Unix socket paths are limited to 108 bytes.
    public static func temporaryDirectory(prefix: String = "casehug-test") throws -> URL {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw HarnessError("mkdtemp failed (errno \(errno))") }
        return URL(fileURLWithPath: String(cString: created))
    }

    /// Polls `condition` every 20 ms until it holds; throws once `timeout` seconds pass.
    public static func waitFor(_ what: String, timeout: Double = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(20_000)
        }
        if try condition() { return }
        throw HarnessError("timed out waiting for \(what)")
    }

    /// Polls `condition` every 20 ms until it holds or `timeout` passes; whether it held.
    ///
    /// It blocks its thread between checks instead of suspending. Swift Testing runs tests on the
    /// cooperative pool, as wide as the cores (2 here), and the long synchronous end-to-end tests
    /// hold its threads for minutes: a suspended poll then waited that long to resume, and its
    /// test failed on its own deadline with the condition long true (StopDrainTests, in the full
    /// suite). Blocking keeps a test that has started running until it ends.
    public static func poll(_ timeout: Duration, _ condition: () throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }

    /// Runs a short-lived tool to completion and returns its output. posix_spawn and waitpid
    /// rather than Foundation's Process: nginx daemonizes, and Process left its parent a zombie
    /// that waitUntilExit never noticed. `environment` replaces the test process's own when given.
    @discardableResult
    public static func runTool(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws
        -> String
    {
        let outputPath = NSTemporaryDirectory() + "casehug-tool-" + UUID().uuidString + ".log"
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
        guard spawned == 0 else { throw HarnessError("cannot start \(path): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw HarnessError("waitpid failed for \(path)") }
        }
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED and WEXITSTATUS are macros Swift cannot import.
        let exitedCleanly = status & 0x7f == 0 && (status >> 8) & 0xff == 0
        guard exitedCleanly else { throw HarnessError("\(path) failed (status \(status)): \(text)") }
        return text
    }

    /// Where the next `freePort` search starts. Ports come from below the kernel's ephemeral
    /// range (32768–60999 on Linux by default), and each is handed out once per test process.
    /// A port from `bind(0)` came from that range: while a test started its server, another
    /// test's probe or a client connection's source port could take the same port, and a
    /// request then reached another test's server (PartnerRateLimitTests got a 404 from one in
    /// CI). The start depends on the process id, so two test runs on one machine search apart.
    private static let nextPort = Locked(20_000 + Int(getpid() % 24) * 500)
    private static let portRange = 20_000..<32_000

    /// A loopback TCP port nothing listens on or uses right now, never handed out before by
    /// this process.
    public static func freePort() throws -> Int {
        try nextPort.withLock { next in
            for _ in 0..<portRange.count {
                let port = next
                next = next + 1 < portRange.upperBound ? next + 1 : portRange.lowerBound
                if isUnused(port) { return port }
            }
            throw HarnessError("no free loopback port in \(portRange)")
        }
    }

    /// Whether a probe socket binds 127.0.0.1:`port` without SO_REUSEADDR: nothing listens on
    /// it and no connection (or TIME_WAIT) holds it.
    static func isUnused(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return bound == 0
    }

    /// Direct children of `pid` (a supervisor's pre-forked workers).
    public static func childPIDs(of pid: pid_t) -> Set<pid_t> {
        if let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8) {
            return Set(text.split(whereSeparator: \.isWhitespace).compactMap { pid_t($0) })
        }
        // Kernels without CONFIG_PROC_CHILDREN: scan every process's parent pid.
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var result: Set<pid_t> = []
        for entry in entries {
            guard let candidate = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, pid_t(fields[1]) == pid { result.insert(candidate) }
        }
        return result
    }

    /// Whether `pid` no longer runs: gone from /proc, or a zombie nobody has reaped yet (an
    /// orphan's new parent may be a container's init that never reaps).
    public static func hasExited(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return true }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        return state == "Z" || state == "X"
    }
}
