import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `scripts/deploy --systemd` end to end. This container runs no systemd, so a test double of
/// `systemctl` (Fixtures/systemd-double/systemctl, first on PATH for these calls only) stands in
/// for it: it reads the units and drop-ins `deploy/install --root` wrote and runs each slot's own
/// `ExecStart=` as its `User=` with its `EnvironmentFile=`s, in a mount namespace that shows the
/// installed tree at /etc/casehug and /opt/casehug. Everything else is real: deploy/install, the
/// release layout under the tree's /opt/casehug, scripts/deploy, the route, nginx, PostgreSQL.
extension DeployTests {
    static let doubleDirectory = TestEnvironment.repositoryRoot.appendingPathComponent(
        "Tests/IntegrationTests/Fixtures/systemd-double"
    ).path

    /// An installed tree and the environment that makes scripts/deploy's `systemctl` the double's.
    struct Host {
        let tree: URL
        let environment: [String: String]
        var prefix: String { tree.path + "/opt/casehug" }
        var units: String { tree.path + "/etc/systemd/system" }

        func systemctl(_ arguments: [String]) throws -> String {
            try Processes.runTool(
                DeployTests.doubleDirectory + "/systemctl", arguments, environment: environment)
        }

        func mainPID(_ unit: String) throws -> pid_t {
            pid_t(
                try systemctl(["show", "-p", "MainPID", "--value", unit]).trimmingCharacters(
                    in: .whitespacesAndNewlines))
                ?? 0
        }

        /// The double's record of what a unit wrote (journald's part).
        func log(_ unit: String) -> String {
            (try? String(contentsOfFile: tree.path + "/run/systemd-double/\(unit).log", encoding: .utf8)) ?? ""
        }

        func requestsLogged(_ unit: String) -> Int {
            log(unit).split(separator: "\n").filter { $0.contains(#""event":"request""#) }.count
        }

        /// The real, effective, saved and filesystem uids of a process.
        static func uids(of pid: pid_t) throws -> [String] {
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Uid:") })
            return line.split(separator: "\t").dropFirst().map(String.init)
        }

        func uid(of user: String) throws -> uid_t {
            let passwd = try String(contentsOfFile: tree.path + "/etc/passwd", encoding: .utf8)
            let line = try #require(passwd.split(separator: "\n").first { $0.hasPrefix(user + ":") })
            return try #require(uid_t(line.split(separator: ":")[2]))
        }
    }

    /// The route's settings in systemd's EnvironmentFile= form, from the instance's
    /// launch/ROUTE.env (bash-quoted, what its local slots get). DATABASE_URL goes over TCP: the
    /// unit's private /tmp hides the instance's socket directory (in production PostgreSQL's
    /// socket is not under /tmp).
    static func environmentFile(fromLaunchFile launch: String) throws -> String {
        let output = try Processes.runTool(
            "/bin/bash", ["-c", #"set -a; source "$0"; exec /usr/bin/env -0"#, launch], environment: [:])
        var lines = ["# The scripts/run instance's settings, for DeployTests."]
        for entry in output.split(separator: "\0") {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2,
                !["PWD", "OLDPWD", "SHLVL", "_", "PATH", "HOME", "USER", "LOGNAME", "SHELL"].contains(String(parts[0]))
            else { continue }
            var value = String(parts[1])
            if parts[0] == "DATABASE_URL", let at = value.range(of: "@", options: .backwards),
                let port = value.range(of: ":", range: at.upperBound..<value.endIndex)
            {
                value = String(value[..<at.upperBound]) + "127.0.0.1" + String(value[port.lowerBound...])
            }
            let quoted = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            lines.append("\(parts[0])=\"\(quoted)\"")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    @Test(
        "deploy/install's units swap the status route five times and roll it back under load with no failed request, and the worker twice",
        .enabled(if: getuid() == 0, "deploy/install creates users; the double runs slots as their users"))
    func systemdSwapsUnderLoad() throws {
        let instance = try Instance.start()
        defer { instance.stop() }
        let tree = try Processes.temporaryDirectory(prefix: "casehug-systemd")
        // nginx's workers (www-data) reach the route's sockets through it, as through / on a host.
        chmod(tree.path, 0o755)
        let host = Host(
            tree: tree,
            environment: [
                "PATH": Self.doubleDirectory + ":" + (instance.environment["PATH"] ?? "/usr/bin:/bin"),
                "SYSTEMD_DOUBLE_ROOT": tree.path,
            ])
        let unit = { (slot: String) in "casehug-route@status-\(slot).service" }
        defer {
            _ = try? host.systemctl([
                "stop", unit("a"), unit("b"), "casehug-worker@a.service", "casehug-worker@b.service",
            ])
            try? FileManager.default.removeItem(at: tree)
        }
        try Processes.runTool(
            TestEnvironment.repositoryRoot.appendingPathComponent("deploy/install").path, ["--root", tree.path],
            environment: host.environment)
        try Self.environmentFile(fromLaunchFile: instance.run + "/launch/status.env").write(
            toFile: tree.path + "/etc/casehug/casehug.env", atomically: true, encoding: .utf8)
        try "CASEHUG_WORKERS=4\n".write(
            toFile: tree.path + "/etc/casehug/status.env", atomically: true, encoding: .utf8)
        func deploy(_ arguments: [String]) throws {
            try Processes.runTool(
                Instance.deployScript, ["status", "--systemd", "--prefix", host.prefix] + arguments,
                environment: host.environment)
        }
        let binary = TestEnvironment.releaseBinDirectory + "/status"
        let statusUID = try host.uid(of: "casehug-status")
        let sockets = host.prefix + "/sockets/status"
        let manager = FileManager.default

        /// The live slot as the tree records it, and what holds for it.
        struct Slot {
            let name: String
            let pid: pid_t
        }
        func live() throws -> Slot {
            let name = try manager.destinationOfSymbolicLink(atPath: host.prefix + "/slots/status")
            #expect(try manager.destinationOfSymbolicLink(atPath: sockets + "/status.sock") == "status-\(name).sock")
            let pid = try host.mainPID(unit(name))
            #expect(pid > 0)
            // The unit's User=, from the drop-in deploy/install wrote.
            #expect(try Host.uids(of: pid) == Array(repeating: String(statusUID), count: 4))
            // nginx's group may connect, nobody else: the route as its user set that up.
            let socket = try manager.attributesOfItem(atPath: sockets + "/status-\(name).sock")
            #expect((socket[.posixPermissions] as? Int) == 0o660)
            #expect((socket[.groupOwnerAccountID] as? NSNumber)?.uint32Value == getgrnam("www-data")?.pointee.gr_gid)
            // Boot starts the live slot only.
            let wants = Set(try manager.contentsOfDirectory(atPath: host.units + "/casehug.target.wants"))
            #expect(wants.contains(unit(name)) && !wants.contains(unit(name == "a" ? "b" : "a")))
            return Slot(name: name, pid: pid)
        }

        // The first release starts slot a; then nginx's path to the route leads to the tree's
        // status.sock (the instance's own status slot is left without traffic).
        try deploy(["--binary", binary])
        let first = try live()
        #expect(first.name == "a")
        let nginxSocket = instance.run + "/sockets/status.sock"
        try? manager.removeItem(atPath: nginxSocket + ".systemd")
        try manager.createSymbolicLink(atPath: nginxSocket + ".systemd", withDestinationPath: sockets + "/status.sock")
        #expect(rename(nginxSocket + ".systemd", nginxSocket) == 0)

        let work = try Processes.temporaryDirectory(prefix: "casehug-systemd-load")
        defer { try? manager.removeItem(at: work) }
        let results = Locked<[String: LoadResult]>([:])
        let done = DispatchGroup()
        let started = Date()
        let loader = try Self.startLoad(
            name: "status", url: try #require(instance.demo["BASE_URL"]) + "/api/v1/integrations/smokeball/status",
            environment: [
                "PATH": instance.environment["PATH"] ?? "/usr/bin:/bin",
                "LOAD_BEARER_TOKEN": try #require(instance.demo["DEMO_ADMIN_TOKEN"]),
            ], output: work.appendingPathComponent("status.wrk").path, into: results, done: done)
        defer { Self.stopLoad(loader, name: "status", results: results, done: done) }
        func answeredByTheUnits() -> Int { host.requestsLogged(unit("a")) + host.requestsLogged(unit("b")) }
        var answered = 0
        func answerTheirShare() throws {
            try Self.waitForRequests("status answering", answered + Self.requestsBetweenSwaps) {
                answeredByTheUnits()
            }
            answered = answeredByTheUnits()
        }
        try answerTheirShare()

        var previous = first
        var releases = [try manager.destinationOfSymbolicLink(atPath: host.prefix + "/releases/status/current")]
        for step in 1...6 {
            try deploy(step == 6 ? ["--rollback"] : ["--binary", binary])
            let now = try live()
            #expect(now.name != previous.name && now.pid != previous.pid)
            #expect(Processes.hasExited(previous.pid))
            let current = try manager.destinationOfSymbolicLink(atPath: host.prefix + "/releases/status/current")
            if step == 6 {
                #expect(current == releases[releases.count - 2])
            } else {
                #expect(!releases.contains(current))
            }
            releases.append(current)
            previous = now
            try answerTheirShare()
        }
        let swapsTook = Date().timeIntervalSince(started)
        #expect(results.value["status"] == nil)
        Self.stopLoad(loader, name: "status", results: results, done: done)
        let load = try #require(results.value["status"])
        #expect(load.failure == nil, "\(load.failure ?? "")")
        #expect(load.requests >= 7 * Self.requestsBetweenSwaps)
        #expect(load.non2xx == 0, "status under systemd: \(load.non2xx) answers outside 2xx")
        #expect(load.socketErrors == 0, "status under systemd: \(load.socketErrorLine)")
        print("systemd (test double): " + Self.report("status", load, swapsTook: swapsTook))

        // The worker's slots the same way: no socket, so scripts/deploy waits for the new slot's
        // `started` line in the journal (the double's journalctl); its own role in worker.env.
        try Self.environmentFile(fromLaunchFile: instance.run + "/launch/worker.env").write(
            toFile: tree.path + "/etc/casehug/worker.env", atomically: true, encoding: .utf8)
        let workerUID = try host.uid(of: "casehug-worker")
        var workerPID: pid_t = 0
        for (step, arguments) in [
            ["--binary", TestEnvironment.binDirectory + "/worker"],
            ["--binary", TestEnvironment.binDirectory + "/worker"],
            ["--rollback"],
        ].enumerated() {
            try Processes.runTool(
                Instance.deployScript, ["worker", "--systemd", "--prefix", host.prefix] + arguments,
                environment: host.environment)
            let slot = try manager.destinationOfSymbolicLink(atPath: host.prefix + "/slots/worker")
            #expect(slot == ["a", "b", "a"][step])
            let pid = try host.mainPID("casehug-worker@\(slot).service")
            #expect(pid > 0 && pid != workerPID)
            #expect(try Host.uids(of: pid) == Array(repeating: String(workerUID), count: 4))
            if workerPID != 0 { #expect(Processes.hasExited(workerPID)) }
            workerPID = pid
        }
    }
}
