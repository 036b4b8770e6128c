import Basics
import Foundation
import HTTPClient
import Integration
import PostgreSQL
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `scripts/deploy` against a `scripts/run` instance (own ports and data directory, the
/// executables scripts/test built): what production runs, minus systemd (docs/deploy.md); and
/// its systemd path through a test double of systemctl (DeploySystemdTests.swift). One test at a
/// time: each puts a route under 1,000 requests/s, and two at once would share the cores.
@Suite(.serialized) struct DeployTests {
    /// A `scripts/run --detach` instance, stopped and removed by `stop()`.
    struct Instance {
        let data: String
        let environment: [String: String]
        let demo: [String: String]
        var run: String { data + "/run" }
        static let runScript = TestEnvironment.repositoryRoot.appendingPathComponent("scripts/run").path
        static let deployScript = TestEnvironment.repositoryRoot.appendingPathComponent("scripts/deploy").path

        static func start(binaries: String = TestEnvironment.binDirectory) throws -> Instance {
            let data = NSTemporaryDirectory() + "casehug-deploy-" + ServiceDatabase.randomSuffix()
            let environment = try TestEnvironment.scriptsRunEnvironment(dataDirectory: data, binaries: binaries)
            do {
                try Processes.runTool(runScript, ["--detach"], environment: environment)
            } catch {
                _ = try? Processes.runTool(runScript, ["--stop"], environment: environment)
                try? FileManager.default.removeItem(atPath: data)
                throw error
            }
            let demo = try ScriptsRunTests.readEnvFile(data + "/demo.env")
            return Instance(data: data, environment: environment, demo: demo)
        }

        func stop() {
            _ = try? Processes.runTool(Self.runScript, ["--stop"], environment: environment)
            try? FileManager.default.removeItem(atPath: data)
        }

        /// `scripts/deploy ARGS...`; its log.
        @discardableResult
        func deploy(_ arguments: [String]) throws -> String {
            try Processes.runTool(Self.deployScript, arguments, environment: environment)
        }

        /// The unit's live slot, its supervisor's pid, and the release that process runs (read from
        /// the kernel: the executable's path, releases/UNIT/ID/UNIT).
        func live(_ unit: String) throws -> Live {
            let slot = try FileManager.default.destinationOfSymbolicLink(atPath: run + "/slots/" + unit)
            let text = try String(contentsOfFile: run + "/pids/\(unit)-\(slot).pid", encoding: .utf8)
            let pid = try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
            let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
            let parts = executable.split(separator: "/").map(String.init)
            try #require(parts.count >= 3 && parts[parts.count - 3] == unit && parts.last == unit, "\(executable)")
            return Live(slot: slot, pid: pid, release: parts[parts.count - 2])
        }

        func pointer(_ unit: String, _ name: String) throws -> String {
            try FileManager.default.destinationOfSymbolicLink(atPath: run + "/releases/\(unit)/\(name)")
        }

        /// Lines of a slot's log past byte `offset` that record an answered request.
        func requestsLogged(_ unit: String, slot: String, after offset: UInt64 = 0) -> Int {
            guard let file = FileHandle(forReadingAtPath: run + "/logs/\(unit)-\(slot).log") else { return 0 }
            defer { try? file.close() }
            try? file.seek(toOffset: offset)
            let text = String(decoding: (try? file.readToEnd()) ?? Data(), as: UTF8.self)
            return text.split(separator: "\n").filter { $0.contains(#""event":"request""#) }.count
        }

        /// Requests the unit's two slots answered past the log offsets given (a missing slot: 0).
        func requestsLogged(_ unit: String, after offsets: [String: UInt64]) -> Int {
            ["a", "b"].map { requestsLogged(unit, slot: $0, after: offsets[$0] ?? 0) }.reduce(0, +)
        }

        /// Both slots' log sizes: where counting starts.
        func logOffsets(_ unit: String) -> [String: UInt64] {
            ["a": logSize(unit, slot: "a"), "b": logSize(unit, slot: "b")]
        }

        func logSize(_ unit: String, slot: String) -> UInt64 {
            let attributes = try? FileManager.default.attributesOfItem(atPath: run + "/logs/\(unit)-\(slot).log")
            return (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
        }

        /// `scripts/deploy UNIT ARGS...` and what it changed.
        func swap(_ unit: String, _ arguments: [String]) throws -> Swap {
            let started = Date()
            let previous = try live(unit)
            let offset = logSize(unit, slot: previous.slot == "a" ? "b" : "a")
            try deploy([unit] + arguments)
            let now = try live(unit)
            let newServed =
                (try? Processes.waitFor("\(unit)-\(now.slot) answering the load") {
                    requestsLogged(unit, slot: now.slot, after: offset) > 20
                }) != nil
            return Swap(
                previous: previous, now: now, previousExited: Processes.hasExited(previous.pid),
                newServed: newServed, current: try pointer(unit, "current"),
                previousPointer: try pointer(unit, "previous"), seconds: Date().timeIntervalSince(started))
        }
    }

    /// A unit's live slot, its supervisor's pid and the release it runs.
    struct Live: Sendable {
        let slot: String
        let pid: pid_t
        let release: String
    }

    /// One deploy: the live slot before and after, and what held right after it.
    struct Swap: Sendable {
        let previous: Live
        let now: Live
        let previousExited: Bool
        let newServed: Bool
        let current: String
        let previousPointer: String
        let seconds: Double
    }

    /// What a wrk run counted.
    struct LoadResult: Sendable {
        var requests = 0
        var non2xx = 0
        var socketErrors = 0
        /// wrk's line that breaks them down: connect, read, write, timeout.
        var socketErrorLine = ""
        var seconds = 0.0
        var failure: String?
    }

    /// Requests per second the load generator offers each route: the issue's figure.
    static let loadRate = 1_000
    /// Requests each route must answer before the first swap, between two swaps and after the
    /// last: however fast the machine, every swap happens under a stream of requests, and the
    /// run proves at least 7 × this many per route (a count, not a rate: the rate is printed).
    static let requestsBetweenSwaps = 1_000
    static let pacedLoadScript = TestEnvironment.repositoryRoot.appendingPathComponent(
        "Tests/IntegrationTests/Fixtures/paced-load.lua"
    ).path

    /// Starts wrk offering `loadRate` requests/s at `url` on a schedule
    /// (Fixtures/paced-load.lua, which reads LOAD_SCRIPT and LOAD_BEARER_TOKEN from
    /// `environment`), its output to `output`, and a thread that waits for it and puts what it
    /// counted in `result`; returns its pid. Spawned with an empty signal mask and default
    /// dispositions (the test process's threads may block or ignore SIGINT), so SIGINT stops it
    /// and it still prints its summary.
    static func startLoad(
        name: String, url: String, environment: [String: String], output: String,
        into result: Locked<[String: LoadResult]>, done: DispatchGroup
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGINT)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        // An upper bound on the duration: wrk is stopped (SIGINT) once the swaps are done. Enough
        // connections that the schedule holds while a request waits (16 at 1,000/s: up to 16 ms).
        // wrk counts an answer slower than --timeout as a socket error; a slow answer on a starved
        // machine is not a failed one, so the bound lies past nginx's fastcgi_read_timeout (30 s),
        // after which nginx answers 504, counted as non-2xx.
        let arguments = [
            "/usr/bin/wrk", "-t1", "-c16", "-d600s", "--timeout", "40s", "-s", pacedLoadScript, url,
        ]
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp =
            environment.merging(["LOAD_RATE": String(loadRate)]) { $1 }.map { strdup("\($0.key)=\($0.value)") }
            + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard spawned == 0 else { throw HarnessError("cannot start wrk: errno \(spawned)") }
        let child = pid
        done.enter()
        Thread.detachNewThread {
            var status: Int32 = 0
            while waitpid(child, &status, 0) == -1 && errno == EINTR {}
            var load = Self.parse((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
            if status != 0 { load.failure = "wrk exited with status \(status)" }
            result.withLock { $0[name] = load }
            done.leave()
        }
        return child
    }

    /// SIGINT to wrk (it prints its summary and exits), unless its waiter has already reaped it
    /// (its pid may then be another process's: pids wrap at 32,768 here); then waits for the waiter.
    static func stopLoad(_ pid: pid_t, name: String, results: Locked<[String: LoadResult]>, done: DispatchGroup) {
        if results.value[name] == nil { kill(pid, SIGINT) }
        done.wait()
    }

    /// Waits (polling 4 times a second: each poll reads the logs) until `count()` reaches `target`.
    static func waitForRequests(_ what: String, _ target: Int, _ count: () -> Int) throws {
        let deadline = Date().addingTimeInterval(120)
        while count() < target {
            guard Date() < deadline else { throw HarnessError("timed out waiting for \(what)") }
            Thread.sleep(forTimeInterval: 0.25)
        }
    }

    /// The executables the deploy test runs: scripts/test's debug build, except the release
    /// builds of the routes under load (RELEASE_BIN_DIR): a debug build of them spends its
    /// cores on unoptimised code and cannot take 1,000 requests/s each on 2 cores.
    static func binariesWithReleaseRoutes(_ routes: [String], in directory: URL) throws -> String {
        let debug = TestEnvironment.binDirectory
        let release = TestEnvironment.releaseBinDirectory
        let manager = FileManager.default
        for name in try manager.contentsOfDirectory(atPath: debug) where !routes.contains(name) {
            try manager.createSymbolicLink(
                atPath: directory.appendingPathComponent(name).path, withDestinationPath: debug + "/" + name)
        }
        for route in routes {
            try manager.createSymbolicLink(
                atPath: directory.appendingPathComponent(route).path, withDestinationPath: release + "/" + route)
        }
        return directory.path
    }

    /// What the load run proved, printed (the rate is a figure, never asserted).
    static func report(_ unit: String, _ load: LoadResult, swapsTook: Double) -> String {
        "deploy under load, \(unit): \(load.requests) requests in \(String(format: "%.1f", load.seconds)) s "
            + "(\(Int(Double(load.requests) / max(load.seconds, 0.001)))/s offered \(loadRate)/s), "
            + "non-2xx \(load.non2xx), connection errors \(load.socketErrors), "
            + "5 swaps and 1 rollback in \(Int(swapsTook)) s"
    }

    /// wrk's summary: "N requests in S", and only when any: "Non-2xx or 3xx responses: N",
    /// "Socket errors: connect A, read B, write C, timeout D".
    static func parse(_ output: String) -> LoadResult {
        var result = LoadResult()
        for line in output.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
            if line.contains(" requests in "), let count = Int(words[0]) {
                result.requests = count
                // "40.03s", "1.50m", "800.00ms"
                let duration = words[3]
                let number = Double(duration.prefix { $0.isNumber || $0 == "." }) ?? 0
                let unit = duration.drop { $0.isNumber || $0 == "." }
                result.seconds = number * (["ms": 0.001, "s": 1, "m": 60, "h": 3600][String(unit)] ?? 0)
            } else if line.hasPrefix("Non-2xx or 3xx responses:") {
                result.non2xx = Int(words.last ?? "") ?? -1
            } else if line.hasPrefix("Socket errors:") {
                result.socketErrors = words.compactMap { Int($0) }.reduce(0, +)
                result.socketErrorLine = line
            }
        }
        if result.requests == 0 { result.failure = "no wrk summary: \(output)" }
        return result
    }

    @Test func fiveSwapsAndARollbackOfStatusAndWebhooksUnderLoadFailNoRequest() throws {
        let units = ["status", "webhooks"]
        let binaries = try Processes.temporaryDirectory(prefix: "casehug-deploy-bin")
        defer { try? FileManager.default.removeItem(at: binaries) }
        let instance = try Instance.start(binaries: try Self.binariesWithReleaseRoutes(units, in: binaries))
        defer { instance.stop() }
        let demo = instance.demo
        // The firm connects (the callback makes the webhook subscription whose key signs deliveries).
        try ScriptsRunTests.connect(script: Instance.runScript, environment: instance.environment, demo: demo)
        let sandbox = try Connection(url: try ScriptsRunTests.sandboxDatabaseURL(demo))
        let subscription = try sandbox.execute(
            "SELECT id::text AS id, account_id::text AS account, key FROM sb_webhook_subscriptions LIMIT 1"
        ).single()
        let base = try #require(demo["BASE_URL"])
        let work = try Processes.temporaryDirectory(prefix: "casehug-deploy-load")
        defer { try? FileManager.default.removeItem(at: work) }
        // Tokens and keys reach wrk through its environment, not its command line.
        let path = ["PATH": instance.environment["PATH"] ?? "/usr/bin:/bin"]
        let statusLoad = path.merging(["LOAD_BEARER_TOKEN": try #require(demo["DEMO_ADMIN_TOKEN"])]) { $1 }
        let webhooksLoad = path.merging([
            "LOAD_SCRIPT": TestEnvironment.repositoryRoot.appendingPathComponent("scripts/lib/bench-webhooks.lua").path,
            "BENCH_WEBHOOK_KEY": try subscription.string("key"),
            "BENCH_CLIENT_ID": try #require(demo["SMOKEBALL_CLIENT_ID"]),
            "BENCH_ACCOUNT_ID": try subscription.string("account"),
            "BENCH_SUBSCRIPTION_ID": try subscription.string("id"),
            "BENCH_RESULT": work.appendingPathComponent("webhooks.result").path,
        ]) { $1 }

        let loads = ["status": statusLoad, "webhooks": webhooksLoad]
        // One route at a time takes the load: two routes at 1,000 requests/s each would need
        // about all of 2 cores (docs/deploy.md, "Tested"), which the rest of the suite shares.
        for unit in units {
            let before = try instance.live(unit)
            let results = Locked<[String: LoadResult]>([:])
            let done = DispatchGroup()
            let loadStarted = Date()
            let loader = try Self.startLoad(
                name: unit, url: base + "/api/v1/integrations/smokeball/" + unit, environment: loads[unit]!,
                output: work.appendingPathComponent(unit + ".wrk").path, into: results, done: done)
            // A failed expectation must not leave wrk running for minutes.
            defer { Self.stopLoad(loader, name: unit, results: results, done: done) }
            // Before each swap and after the last, the route answers a fixed count of requests.
            var offsets: [String: UInt64] = [:]
            func answerItsShare() throws {
                try Self.waitForRequests(
                    "\(unit) answering \(Self.requestsBetweenSwaps) requests", Self.requestsBetweenSwaps
                ) {
                    instance.requestsLogged(unit, after: offsets)
                }
                offsets = instance.logOffsets(unit)
            }
            try answerItsShare()

            // Five deploys of the release build (each a new release) and one rollback.
            var releases = [before.release]
            for step in 1...6 {
                let swap = try instance.swap(
                    unit, step == 6 ? ["--rollback"] : ["--binary", TestEnvironment.releaseBinDirectory + "/" + unit])
                let (previous, now) = (swap.previous, swap.now)
                // A different process, in the other slot, running the release deploy chose; the
                // old slot's supervisor is gone; the load reaches the new process.
                #expect(now.pid != previous.pid)
                #expect(now.slot != previous.slot)
                #expect(swap.previousExited)
                #expect(swap.newServed)
                #expect(swap.current == now.release)
                #expect(swap.previousPointer == previous.release)
                if step == 6 {
                    #expect(now.release == releases[releases.count - 2])
                } else {
                    #expect(!releases.contains(now.release))
                }
                releases.append(now.release)
                print("deploy under load, \(unit) step \(step): \(String(format: "%.1f", swap.seconds)) s")
                try answerItsShare()
            }
            let swapsTook = Date().timeIntervalSince(loadStarted)
            // Every swap happened while wrk was running.
            #expect(results.value[unit] == nil)
            Self.stopLoad(loader, name: unit, results: results, done: done)
            let load = try #require(results.value[unit])
            #expect(load.failure == nil, "\(load.failure ?? "")")
            // At least the fixed counts the swaps waited for (the route's logs saw them too).
            #expect(load.requests >= 7 * Self.requestsBetweenSwaps)
            #expect(load.non2xx == 0, "\(unit): \(load.non2xx) answers outside 2xx")
            #expect(load.socketErrors == 0, "\(unit): \(load.socketErrorLine)")
            print(Self.report(unit, load, swapsTook: swapsTook))
        }
        // The releases kept: at most 5, plus current and previous.
        for unit in units {
            let kept = try FileManager.default.contentsOfDirectory(atPath: instance.run + "/releases/" + unit)
                .filter { $0.first?.isNumber == true }
            let current = try instance.pointer(unit, "current")
            #expect(kept.count <= 7 && kept.contains(current))
        }
    }
}

extension DeployTests {
    @Test func deployingTheWorkerWithJobsInFlightRunsEveryJobExactlyOnce() throws {
        let instance = try Instance.start()
        defer { instance.stop() }
        let demo = instance.demo
        try ScriptsRunTests.connect(script: Instance.runScript, environment: instance.environment, demo: demo)
        let http = try HTTPClient()
        let base = try #require(demo["BASE_URL"])
        let sandboxURL = try #require(demo["SANDBOX_ADMIN_URL"])
        // Every Smokeball call of the partner takes a while: the sync jobs are still running when
        // the deploy stops the old worker.
        let fault = try http.send(
            HTTPRequest(
                method: "POST", url: sandboxURL + "/faults", headers: [("Content-Type", "application/json")],
                body: Array(#"{"path_prefix":"/","latency_ms":400,"client_id":"casehug-local"}"#.utf8)))
        #expect(fault.status / 100 == 2)
        let bearer = [("Authorization", "Bearer " + (try #require(demo["DEMO_USER_TOKEN"])))]
        let matters = (1...3).map { "00000000-0000-4000-8000-0000000000d\($0)" }
        var jobs: [String] = []
        for matter in matters {
            let answer = try http.send(
                HTTPRequest(
                    method: "POST", url: base + "/api/v1/integrations/smokeball/sync",
                    headers: bearer + [("Content-Type", "application/json")],
                    body: Array(#"{"matter_id":"\#(matter)","action":"sync_matter"}"#.utf8)))
            #expect(answer.status == 202)
            jobs.append(try #require(answer.jsonObject["job_id"] as? String))
        }
        let database = try Connection(url: try #require(demo["SUPERUSER_DATABASE_URL"]))
        func states() throws -> [String: (status: String, attempts: Int64)] {
            var result: [String: (status: String, attempts: Int64)] = [:]
            for row in try database.execute(
                "SELECT id::text AS id, status, attempts::bigint AS attempts FROM jobs WHERE id = ANY($1::uuid[])",
                ["{" + jobs.joined(separator: ",") + "}"]
            ).rows {
                result[try row.string("id")] = (try row.string("status"), try row.int("attempts"))
            }
            return result
        }
        // The old worker holds jobs when the deploy begins.
        try Processes.waitFor("a sync job running", timeout: 30) {
            try states().values.contains { $0.status == "running" }
        }
        let running = try states().filter { $0.value.status == "running" }.count
        let old = try instance.live("worker")
        try instance.deploy(["worker", "--binary", TestEnvironment.binDirectory + "/worker"])
        let new = try instance.live("worker")
        #expect(new.pid != old.pid && new.slot != old.slot && new.release != old.release)
        #expect(Processes.hasExited(old.pid))
        try Processes.waitFor("every sync job finished", timeout: 60) {
            try states().values.allSatisfy { ["succeeded", "dead"].contains($0.status) }
        }
        // Each job ran once (no attempt released or rescued), and Smokeball got each matter once.
        for (id, state) in try states() {
            #expect(state.status == "succeeded" && state.attempts == 1, "job \(id): \(state)")
        }
        let sandbox = try Connection(url: try ScriptsRunTests.sandboxDatabaseURL(demo))
        for matter in matters {
            let created = try sandbox.execute(
                "SELECT count(*)::bigint AS n FROM sb_matters WHERE external_system_id = $1", [matter]
            ).single().int("n")
            #expect(created == 1, "matter \(matter) created \(created) times in Smokeball")
        }
        print("worker deploy: \(running) sync jobs running in the old worker when it was deployed; all ran once")
    }
}
