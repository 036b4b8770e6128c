import Basics
import FastCGI
import Foundation
import PostgreSQL

/// The start of a job worker executable, written once (`Sources/worker/main.swift` is this call):
/// the flags, the database from `DATABASE_URL` (the `casehug_worker` role: refused if it is a
/// superuser or BYPASSRLS role, as routes refuse theirs), then a supervisor that pre-forks
/// `--workers` processes, each a `WorkerLoop`, and on SIGTERM gives them the grace period to
/// finish or release their jobs.
///
/// Flags: `--workers N` (default 2), `--lease-seconds S` (default 60), `--grace-seconds S`
/// (default 20), `--backoff-seconds S` (first retry delay, default 5), `--poll-seconds S` (an idle
/// worker looks for work this often even without a notification, default 60).
public enum Worker {
    public static func serve(
        arguments: [String] = CommandLine.arguments, _ makeHandlers: () throws -> [any JobHandler]
    ) -> Never {
        let log = Logger(route: "worker")
        let workers: Int
        let options: WorkerOptions
        let handlers: [any JobHandler]
        let queueDatabase: Database
        let workDatabase: Database
        do {
            (workers, options) = try parse(Array(arguments.dropFirst()))
            handlers = try makeHandlers()
            guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
                throw ConfigurationError(variable: "DATABASE_URL", problem: "is not set")
            }
            // A job may run statements longer than a request's; the other limits are the routes'.
            var connectionOptions = ConnectionOptions.routes
            connectionOptions.statementTimeoutMilliseconds = 60_000
            queueDatabase = Database(url: url, applicationName: "casehug-worker", options: connectionOptions)
            workDatabase = Database(url: url, applicationName: "casehug-worker-job", options: connectionOptions)
            try Route.prepare(queueDatabase, log: log)
        } catch {
            log.error("startup_failed", ["reason": String(describing: error)])
            exit(2)
        }
        signal(SIGPIPE, SIG_IGN)
        let kinds = handlers.map(\.kind).sorted()
        // The supervisor's own grace outlasts the workers' so it does not kill one mid-release.
        let supervisor = Supervisor(
            workers: workers, shutdownGraceSeconds: Int(options.graceSeconds.rounded(.up)) + 10, log: log,
            startFields: ["kinds": kinds.joined(separator: ",")]
        ) {
            guard StopSignals.install() else {
                log.error("worker_failed", ["reason": "cannot install the stop handler", "errno": Int(errno)])
                return
            }
            WorkerLoop(
                queue: JobQueue(database: queueDatabase), work: workDatabase, handlers: handlers, options: options,
                log: log
            ).run()
        }
        let status = supervisor.run()
        log.info("stopped")
        exit(status)
    }

    static func parse(_ arguments: [String]) throws -> (workers: Int, options: WorkerOptions) {
        let flags = try CommandLineOptions(
            arguments, allowed: ["workers", "lease-seconds", "grace-seconds", "backoff-seconds", "poll-seconds"])
        var options = WorkerOptions()
        options.leaseSeconds = Double(try flags.integer("lease-seconds", in: 1...3600) ?? 60)
        options.graceSeconds = Double(try flags.integer("grace-seconds", in: 0...3600) ?? 20)
        options.backoff.baseSeconds = Double(try flags.integer("backoff-seconds", in: 0...86_400) ?? 5)
        options.maximumIdleSeconds = Double(
            try flags.integer("poll-seconds", in: 1...3600) ?? Int(options.maximumIdleSeconds))
        return (try flags.integer("workers", in: 1...256) ?? 2, options)
    }
}
