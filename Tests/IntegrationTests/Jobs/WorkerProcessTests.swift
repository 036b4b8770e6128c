import Foundation
import Integration
import PostgreSQL
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `job-test-worker` (the real worker runtime with the test-only kind `test_record`) as a real
/// supervisor process with its pre-forked workers, on the queue fixture's database.
final class WorkerProcess {
    let process = Process()
    let log: URL

    convenience init(
        _ fixture: QueueFixture, workers: Int, leaseSeconds: Int = 30, graceSeconds: Int = 20,
        extraArguments: [String] = [], environment: [String: String] = [:]
    ) throws {
        try self.init(
            database: fixture.database, workers: workers, leaseSeconds: leaseSeconds, graceSeconds: graceSeconds,
            extraArguments: extraArguments, environment: environment)
    }

    init(
        database: ServiceDatabase, workers: Int, leaseSeconds: Int = 30, graceSeconds: Int = 20,
        extraArguments: [String] = [], environment: [String: String] = [:]
    ) throws {
        process.executableURL = URL(fileURLWithPath: TestEnvironment.binDirectory)
            .appendingPathComponent("job-test-worker")
        process.arguments =
            [
                "--workers", String(workers), "--lease-seconds", String(leaseSeconds), "--grace-seconds",
                String(graceSeconds), "--backoff-seconds", "0",
            ] + extraArguments
        process.environment = ["DATABASE_URL": database.workerURL, "PATH": "/usr/bin:/bin"].merging(environment) {
            $1
        }
        log = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("job-worker-\(UUID()).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: log)
    }

    var pid: pid_t { process.processIdentifier }
    var workerPIDs: Set<pid_t> { Processes.childPIDs(of: pid) }
    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    func terminate() { kill(pid, SIGTERM) }

    func waitForExit(timeout: Double = 60) throws {
        try Processes.waitFor("the worker supervisor to exit", timeout: timeout) { !process.isRunning }
    }

    /// The CPU time (user + system, in seconds) a process has used so far, from /proc.
    static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14, stime 15 (1-based), i.e. 11 and 12 here.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// The worker as processes: crash rescue, SIGTERM, and waking on NOTIFY.
@Suite struct WorkerProcessTests {
    /// The table `test_record` writes its events to (the job id as key).
    static func createEventsTable(_ fixture: QueueFixture) throws { try createEventsTable(fixture.database) }

    /// `job_test_events`, where `job-test-worker` records each attempt of its test kinds.
    static func createEventsTable(_ database: ServiceDatabase) throws {
        try database.admin().executeScript(
            """
            CREATE TABLE job_test_events (
                job_id uuid NOT NULL, attempt integer NOT NULL, event text NOT NULL, pid integer NOT NULL,
                at timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            GRANT SELECT, INSERT ON job_test_events TO casehug_worker;
            """)
    }

    static func events(_ fixture: QueueFixture, _ job: UUID, _ event: String) throws -> [(attempt: Int64, pid: Int64)] {
        try fixture.database.admin().execute(
            "SELECT attempt, pid FROM job_test_events WHERE job_id = $1 AND event = $2 ORDER BY at", [job, event]
        ).rows.map { (try $0.int("attempt"), try $0.int("pid")) }
    }

    static func enqueue(_ fixture: QueueFixture, _ payload: [String: Int]) throws -> UUID {
        try fixture.enqueue(
            as: fixture.firmA.standard, kind: "test_record", key: UUID().uuidString, payload: payload,
            priority: .interactive)
    }

    @Test func aJobWhoseWorkerIsKilledMidWayIsRescuedByAnotherAndTakesEffectOnce() throws {
        try QueueFixture.with { fixture in
            try Self.createEventsTable(fixture)
            let worker = try WorkerProcess(fixture, workers: 2, leaseSeconds: 2)
            // The first attempt blocks until killed; the second gets through.
            let job = try Self.enqueue(fixture, ["block_attempts": 1])
            var victim: pid_t = 0
            try Processes.waitFor("the first attempt to start", timeout: 30) {
                guard let started = try Self.events(fixture, job, "started").first else { return false }
                victim = pid_t(started.pid)
                return true
            }
            #expect(worker.workerPIDs.contains(victim))
            kill(victim, SIGKILL)
            try Processes.waitFor("the job to be rescued and finish", timeout: 60) {
                try fixture.status(job).status == "succeeded"
            }
            let effects = try Self.events(fixture, job, "effect")
            #expect(effects.count == 1)
            #expect(effects.first?.attempt == 2)
            #expect(effects.first.map { pid_t($0.pid) } != victim)
            #expect(try Self.events(fixture, job, "started").count == 2)
            #expect(try fixture.status(job).attempts == 2)
            worker.terminate()
            try worker.waitForExit()
        }
    }

    @Test func theProgressAJobReportsLastIsRecordedWithItsOutcomeEvenBetweenHeartbeats() throws {
        try QueueFixture.with { fixture in
            try Self.createEventsTable(fixture)
            // A long lease: the job ends long before its first heartbeat.
            let worker = try WorkerProcess(fixture, workers: 1, leaseSeconds: 60)
            let job = try Self.enqueue(fixture, ["progress_total": 7])
            try Processes.waitFor("the job to finish", timeout: 30) {
                try fixture.status(job).status == "succeeded"
            }
            let row = try fixture.database.admin().execute(
                "SELECT progress_done, progress_total FROM jobs WHERE id = $1", [job]
            ).single()
            #expect(try row.int("progress_done") == 7)
            #expect(try row.optionalInt("progress_total") == 7)
            worker.terminate()
            try worker.waitForExit()
        }
    }

    @Test func aWorkerWhoseJobWasTakenOverEndsAndIsReplaced() throws {
        try QueueFixture.with { fixture in
            try Self.createEventsTable(fixture)
            let worker = try WorkerProcess(fixture, workers: 1, leaseSeconds: 3)
            let job = try Self.enqueue(fixture, ["block_attempts": 1])
            var holder: pid_t = 0
            try Processes.waitFor("the job to start", timeout: 30) {
                guard let started = try Self.events(fixture, job, "started").first else { return false }
                holder = pid_t(started.pid)
                return true
            }
            // As if its lease had lapsed and another worker had rescued the job.
            try fixture.database.admin().execute(
                """
                UPDATE jobs SET lease_id = gen_random_uuid(), lease_until = now() + interval '1 hour',
                                run_after = now() + interval '1 hour'
                WHERE id = $1
                """, [job])
            try Processes.waitFor("the worker to give the job up", timeout: 30) { Processes.hasExited(holder) }
            try Processes.waitFor("the supervisor to replace it", timeout: 30) {
                !worker.workerPIDs.isEmpty && !worker.workerPIDs.contains(holder)
            }
            #expect(try fixture.status(job).status == "running")
            #expect(try Self.events(fixture, job, "effect").isEmpty)
            worker.terminate()
            try worker.waitForExit()
        }
    }

    @Test func onSigtermAWorkerFinishesAShortJobAndTheSupervisorExits() throws {
        try QueueFixture.with { fixture in
            try Self.createEventsTable(fixture)
            let worker = try WorkerProcess(fixture, workers: 1, graceSeconds: 30)
            let job = try Self.enqueue(fixture, ["sleep_ms": 1500])
            try Processes.waitFor("the job to start", timeout: 30) {
                try !Self.events(fixture, job, "started").isEmpty
            }
            worker.terminate()
            try worker.waitForExit()
            #expect(try fixture.status(job).status == "succeeded")
            #expect(try Self.events(fixture, job, "effect").count == 1)
        }
    }

    @Test func onSigtermAWorkerReleasesAJobThatOutlastsTheGracePeriod() throws {
        try QueueFixture.with { fixture in
            try Self.createEventsTable(fixture)
            let worker = try WorkerProcess(fixture, workers: 1, graceSeconds: 1)
            let job = try Self.enqueue(fixture, ["block_attempts": 1])
            try Processes.waitFor("the job to start", timeout: 30) {
                try !Self.events(fixture, job, "started").isEmpty
            }
            worker.terminate()
            try worker.waitForExit()
            let row = try fixture.status(job)
            #expect(row.status == "pending")
            #expect(row.attempts == 0)
            #expect(worker.logText.contains("\"job_released\""))
        }
    }

    @Test func anIdleWorkerSleepsAndAnEnqueuedJobWakesIt() throws {
        try QueueFixture.with { fixture in
            try Self.createEventsTable(fixture)
            let worker = try WorkerProcess(fixture, workers: 1)
            // Idle: it has claimed nothing and waits (LISTEN, then an empty claim).
            var child: pid_t = 0
            try Processes.waitFor("the worker to listen", timeout: 30) {
                guard let pid = worker.workerPIDs.first else { return false }
                child = pid
                return try fixture.database.admin().execute(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN casehug_jobs'"
                ).rowCount == 1
            }
            let before = try #require(WorkerProcess.cpuSeconds(child))
            let measuredFor = 3.0
            usleep(UInt32(measuredFor * 1_000_000))
            let after = try #require(WorkerProcess.cpuSeconds(child))
            print(
                "idle worker CPU: \(String(format: "%.2f", (after - before) / measuredFor * 100))% "
                    + "(\(String(format: "%.3f", after - before)) s over \(measuredFor) s)")
            // Without a notification it would sleep for minutes (no job is due before it is enqueued).
            let enqueued = Date()
            let job = try Self.enqueue(fixture, [:])
            try Processes.waitFor("the idle worker to run the job", timeout: 30) {
                try fixture.status(job).status == "succeeded"
            }
            print("enqueue to succeeded: \(Int(Date().timeIntervalSince(enqueued) * 1000)) ms")
            #expect(try Self.events(fixture, job, "effect").count == 1)
            worker.terminate()
            try worker.waitForExit()
        }
    }

    @Test func failingAttemptsAreRetriedByTheWorkerUntilTheJobIsDead() throws {
        try QueueFixture.with { fixture in
            try Self.createEventsTable(fixture)
            let worker = try WorkerProcess(fixture, workers: 1)
            let job = try fixture.enqueue(
                as: fixture.firmA.standard, kind: "test_record", key: "always-fails", payload: ["fail_attempts": 99],
                maxAttempts: 3)
            try Processes.waitFor("the job to die", timeout: 60) { try fixture.status(job).status == "dead" }
            let row = try fixture.status(job)
            #expect(row.attempts == 3)
            #expect(row.error == "test_failure: attempt 3 failed on purpose")
            #expect(try Self.events(fixture, job, "effect").isEmpty)
            worker.terminate()
            try worker.waitForExit()
        }
    }

    @Test func theWorkerRefusesToStartAsASuperuser() throws {
        try QueueFixture.with { fixture in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: TestEnvironment.binDirectory)
                .appendingPathComponent("job-test-worker")
            process.arguments = ["--workers", "1"]
            process.environment = ["DATABASE_URL": fixture.database.adminURL, "PATH": "/usr/bin:/bin"]
            let output = Pipe()
            process.standardError = output
            try process.run()
            process.waitUntilExit()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus != 0)
            #expect(text.contains("privileged_role"))
        }
    }
}
