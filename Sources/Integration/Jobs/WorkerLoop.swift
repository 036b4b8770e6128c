import FastCGI
import Foundation
import PostgreSQL

#if canImport(Glibc)
    import Glibc
#endif

/// Timings of a job worker.
public struct WorkerOptions: Sendable, Equatable {
    /// How long a claim holds a job without a heartbeat; a worker that dies is replaced on its
    /// jobs this long after its last heartbeat.
    public var leaseSeconds: Double = 60
    /// After SIGTERM, how long the current job may still run to its end before it is released.
    public var graceSeconds: Double = 20
    public var backoff: JobBackoff = .standard
    /// An idle worker with nothing due wakes this often anyway and looks for work: the poll that
    /// finds what a lost notification announced (`--poll-seconds`).
    public var maximumIdleSeconds: Double = 60

    public init() {}

    /// A heartbeat every third of the lease: two can be missed before it lapses.
    var heartbeatSeconds: Double { leaseSeconds / 3 }
}

/// One worker process's life: LISTEN on the queue's channel, claim the most urgent due job, run
/// its handler on a thread while this thread sends heartbeats, record the outcome, repeat; with
/// nothing due, sleep in `ppoll` until a notification, the next `run_after`, or a stop signal
/// (no busy polling). On SIGTERM the current job may finish within the grace period; otherwise it
/// is released (back to pending, no attempt spent) and the worker returns.
///
/// Three sessions: `queue` for claims and reports, `work` handed to handlers (so a long handler
/// transaction never delays a heartbeat), and the listening connection.
public final class WorkerLoop {
    let queue: JobQueue
    let work: Database
    let listenURL: String
    let listenOptions: ConnectionOptions
    let handlers: [String: any JobHandler]
    let options: WorkerOptions
    let log: Logger
    /// The kinds this worker also schedules, and when to ask them next.
    let schedulers: [any ScheduledJobHandler]
    private var nextSchedule = Date.distantPast
    /// Whether this worker also claims stored webhook events (it runs their handler), which are
    /// their own work items (migration 045).
    let claimsWebhookEvents: Bool
    /// Jobs and events are claimed in turn when both are due, so neither starves the other.
    private var webhookEventsFirst = false

    public init(
        queue: JobQueue, work: Database, handlers: [any JobHandler], options: WorkerOptions, log: Logger
    ) {
        self.queue = queue
        self.work = work
        self.listenURL = queue.database.url
        self.listenOptions = queue.database.options
        let byKind = Dictionary(handlers.map { ($0.kind, $0) }, uniquingKeysWith: { first, _ in first })
        self.handlers = byKind
        self.schedulers = byKind.keys.sorted().compactMap { byKind[$0] as? any ScheduledJobHandler }
        self.claimsWebhookEvents = byKind[InboundJobs.processWebhookEvent] != nil
        self.options = options
        self.log = log
    }

    var kinds: [String] { handlers.keys.sorted() }

    static let shortestIdleWait = 0.2

    /// Runs until SIGTERM/SIGINT (call `StopSignals.install()` first, as `Worker.serve` does).
    public func run() {
        var listener: Connection?
        var failures = 0
        while !StopSignals.checkPending() {
            do {
                if listener == nil || listener?.isConnected == false {
                    let connection = try Connection(
                        url: listenURL, applicationName: "casehug-worker-listen", options: listenOptions)
                    try connection.listen(JobQueue.channel)
                    listener = connection
                }
                guard let listening = listener else { continue }
                schedule()
                if let job = try claim() {
                    failures = 0
                    if execute(job) == .stopped { return }
                    continue
                }
                failures = 0
                try sleepUntilDue(listening)
            } catch {
                // The database is down or restarting: back off (up to 30 s) without spinning.
                failures += 1
                listener = nil
                let pause = min(30, 0.5 * pow(2, Double(min(failures, 6))))
                log.warning("queue_unavailable", ["error": String(describing: error), "retry_in_seconds": pause])
                // No descriptor (poll ignores -1): a sleep that a stop signal still ends.
                _ = try? StopSignals.wait(readable: -1, timeout: pause)
            }
        }
    }

    /// The next job or webhook event, whichever queue's turn it is first.
    private func claim() throws -> Job? {
        guard claimsWebhookEvents else { return try queue.claim(kinds: kinds, leaseSeconds: options.leaseSeconds) }
        webhookEventsFirst.toggle()
        if webhookEventsFirst {
            return try queue.claimWebhookEvent(leaseSeconds: options.leaseSeconds)
                ?? queue.claim(kinds: kinds, leaseSeconds: options.leaseSeconds)
        }
        return try queue.claim(kinds: kinds, leaseSeconds: options.leaseSeconds)
            ?? queue.claimWebhookEvent(leaseSeconds: options.leaseSeconds)
    }

    /// Asks the scheduled kinds to enqueue what is due, once their time has come. A failure is
    /// logged and asked again a minute later: it must not keep the worker from its other jobs.
    private func schedule() {
        guard !schedulers.isEmpty, Date() >= nextSchedule else { return }
        do {
            let delay = try schedulers.map { try $0.schedule(queue.database) }.min() ?? options.maximumIdleSeconds
            nextSchedule = Date().addingTimeInterval(max(Self.shortestIdleWait, delay))
        } catch {
            nextSchedule = Date().addingTimeInterval(60)
            log.warning("schedule_failed", ["error": String(describing: error), "retry_in_seconds": 60])
        }
    }

    /// Sleeps until a notification, the next job's due time, the next scheduled time, or a stop
    /// request.
    private func sleepUntilDue(_ listener: Connection) throws {
        // Deliveries notify only while a worker waits for events (`JobQueue.waitingForWebhookEvents`).
        guard claimsWebhookEvents else { return try waitForDueWork(listener) }
        try JobQueue.waitingForWebhookEvents(listener) { try waitForDueWork(listener) }
    }

    private func waitForDueWork(_ listener: Connection) throws {
        let queued = try queue.nextDue(kinds: kinds)
        let event = claimsWebhookEvents ? try queue.nextWebhookEventDue() : nil
        let scheduled = schedulers.isEmpty ? nil : nextSchedule.timeIntervalSinceNow
        let due = [queued, event, scheduled].compactMap { $0 }.min()
        // A job can be due yet not claimable right now (another worker is claiming it and holds
        // its row): wait a little rather than not at all, so a worker never spins, and a stop
        // signal (delivered only inside the wait) always gets through.
        let timeout = min(options.maximumIdleSeconds, max(Self.shortestIdleWait, due ?? options.maximumIdleSeconds))
        if try StopSignals.wait(readable: listener.socketDescriptor, timeout: timeout) == .readable {
            _ = try listener.notifications()
        }
    }

    /// Whether the process goes on claiming, or ends (asked to stop, or its job was lost).
    enum Ending { case continuing, stopped }

    /// Runs one claimed job to an outcome the queue records.
    private func execute(_ job: Job) -> Ending {
        let started = Date()
        let fields: [String: any Sendable] = [
            "job_id": job.id.uuidString.lowercased(), "kind": job.kind, "attempt": job.attempts,
            "firm_id": job.firmID.uuidString.lowercased(),
        ]
        guard let handler = handlers[job.kind] else {
            record(
                job, .failure(JobError(.unknownKind, "no handler for this kind", retryable: false)), progress: nil,
                fields, started)
            return .continuing
        }
        guard let done = SelfPipe() else {
            // Out of descriptors: give the job back and let the supervisor start a fresh process.
            _ = try? queue.release(job)
            log.error("worker_failed", fields.merging(["reason": "cannot create a pipe", "errno": Int(errno)]) { $1 })
            return .stopped
        }
        log.info("job_started", fields)
        let context = JobContext(
            scope: JobScope(jobID: job.id, leaseID: job.leaseID, queue: job.queue), database: work, log: log)
        let outcome = Outcome()
        let thread = Thread {
            let result: JobOutcome
            do {
                let value = try handler.run(job, context)
                result = .success(try value.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) })
            } catch {
                result = .failure(JobError.readable(error))
            }
            outcome.set(result)
            done.signal()
        }
        // Handlers may recurse through JSON and HTTP: give them a main-thread-sized stack.
        thread.stackSize = 8 << 20
        thread.start()

        var stopDeadline: Date?
        var nextHeartbeat = Date().addingTimeInterval(options.heartbeatSeconds)
        while outcome.value == nil {
            let until = [nextHeartbeat, stopDeadline].compactMap { $0 }.min() ?? nextHeartbeat
            let wake: StopSignals.Wake
            if stopDeadline == nil {
                wake = (try? StopSignals.wait(readable: done.readFD, timeout: until.timeIntervalSinceNow)) ?? .timedOut
            } else {
                // Already stopping: the flag stays set, so wait on the pipe alone.
                wake = done.wait(timeout: until.timeIntervalSinceNow) ? .readable : .timedOut
            }
            if wake == .stopRequested, stopDeadline == nil {
                stopDeadline = Date().addingTimeInterval(options.graceSeconds)
                context.markStopping()
                log.info("job_stopping", fields.merging(["grace_seconds": options.graceSeconds]) { $1 })
            }
            if outcome.value != nil { break }
            if let deadline = stopDeadline, Date() >= deadline {
                let status = try? queue.release(job)
                log.info("job_released", fields.merging(["status": status?.rawValue ?? "lease_lost"]) { $1 })
                // The handler's thread dies with the process; its lease is gone, so nothing it
                // still tries under the job's scope can land.
                return .stopped
            }
            if Date() >= nextHeartbeat {
                do {
                    if try !queue.heartbeat(job, leaseSeconds: options.leaseSeconds, progress: context.progress) {
                        // Another worker has the job now: this process ends, and its handler
                        // with it, so the job never runs twice at once. The supervisor
                        // replaces the process.
                        log.warning("job_lease_lost", fields)
                        return .stopped
                    }
                } catch {
                    // One missed heartbeat is survivable (the lease spans three); keep trying.
                    log.warning("job_heartbeat_failed", fields.merging(["error": String(describing: error)]) { $1 })
                }
                nextHeartbeat = Date().addingTimeInterval(options.heartbeatSeconds)
            }
        }
        if let result = outcome.value { record(job, result, progress: context.progress, fields, started) }
        return stopDeadline == nil ? .continuing : .stopped
    }

    private func record(
        _ job: Job, _ result: JobOutcome, progress: JobProgress?, _ fields: [String: any Sendable], _ started: Date
    ) {
        var fields = fields
        fields["duration_ms"] = Int(Date().timeIntervalSince(started) * 1000)
        do {
            switch result {
            case .success(let json):
                let held = try queue.finish(job, resultJSON: json, progress: progress)
                log.info(held ? "job_succeeded" : "job_lease_lost", fields)
            case .failure(let error):
                let status = try queue.fail(job, error: error, backoff: options.backoff, progress: progress)
                fields["error"] = error.code.rawValue
                fields["status"] = status?.rawValue ?? "lease_lost"
                log.warning("job_failed", fields)
            }
        } catch {
            // The lease will lapse and the job be rescued: at worst it runs once more.
            fields["error"] = String(describing: error)
            log.error("job_outcome_not_recorded", fields)
        }
    }
}

enum JobOutcome: Sendable {
    case success(String?)
    case failure(JobError)
}

/// The handler thread's outcome, read by the worker's thread.
private final class Outcome: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: JobOutcome?

    var value: JobOutcome? {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }

    func set(_ outcome: JobOutcome) {
        lock.lock()
        stored = outcome
        lock.unlock()
    }
}

/// A pipe the handler's thread writes one byte to when it ends, so the worker's thread can wait
/// for that, a heartbeat time and a stop signal in one `ppoll`. Owns both descriptors.
final class SelfPipe: @unchecked Sendable {
    let readFD: Int32
    let writeFD: Int32

    init?() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        readFD = fds[0]
        writeFD = fds[1]
    }

    deinit {
        close(readFD)
        close(writeFD)
    }

    func signal() {
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }

    /// Whether the pipe became readable within `timeout` seconds (signals not involved).
    func wait(timeout: TimeInterval) -> Bool {
        var target = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(min(max(0, timeout) * 1000, 86_400_000).rounded(.up))
        return poll(&target, 1, milliseconds) > 0
    }
}
