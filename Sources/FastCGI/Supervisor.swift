import CFastCGISupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Keeps `workers` worker processes alive: replaces any that die (with a back-off so a worker
/// that crashes at start cannot spin), and on SIGTERM/SIGINT asks them to finish their work and
/// exit, killing stragglers after `shutdownGrace`. The FastCGI routes use it, and so does the
/// job worker (`work` is whatever a worker process does until asked to stop).
public final class Supervisor {
    let workers: Int
    let startFields: [String: any Sendable]
    let log: Logger
    let work: () -> Void
    let shutdownGrace: Int64
    private var children: [pid_t: Int64] = [:]
    private var restartDelay: Int64 = 0
    private var nextSpawnAt: Int64 = 0

    /// `startFields` go into the `started` log line. A worker runs `work` with SIGTERM and SIGINT
    /// blocked (see `StopSignals`), and exits when it returns.
    public init(
        workers: Int, shutdownGraceSeconds: Int = 10, log: Logger, startFields: [String: any Sendable] = [:],
        work: @escaping () -> Void
    ) {
        self.workers = workers
        self.shutdownGrace = Int64(shutdownGraceSeconds) * 1_000_000_000
        self.startFields = startFields
        self.log = log
        self.work = work
    }

    convenience init(options: ServerOptions, log: Logger, work: @escaping () -> Void) {
        self.init(
            workers: options.workers, log: log, startFields: ["socket": options.socketPath ?? "fd0"], work: work)
    }

    /// Serves until SIGTERM/SIGINT; returns the process's exit status (non-zero when forking a
    /// worker was unsafe).
    public func run() -> Int32 {
        var watched = sigset_t()
        sigemptyset(&watched)
        for signal in [SIGTERM, SIGINT, SIGCHLD] { sigaddset(&watched, signal) }
        // Blocked signals stay pending for sigtimedwait below; children inherit the mask and
        // unblock what they handle, so no signal is lost between fork and handler setup.
        sigprocmask(SIG_BLOCK, &watched, nil)
        log.info("started", startFields.merging(["workers": workers]) { $1 })
        var status: Int32 = 0
        while true {
            if let reason = spawnMissing() {
                log.error("fork_unsafe", ["reason": reason])
                status = 1
                break
            }
            var info = siginfo_t()
            var timeout = timespec(tv_sec: 1, tv_nsec: 0)
            let signal = sigtimedwait(&watched, &info, &timeout)
            if signal == SIGTERM || signal == SIGINT { break }
            reap(stopping: false)
        }
        stopChildren(watched: &watched)
        return status
    }

    /// Forks workers up to `workers`. Returns why forking is unsafe when a registered
    /// `ForkSafety` check says so; nothing is forked then.
    private func spawnMissing() -> String? {
        let now = monotonicNanoseconds()
        guard now >= nextSpawnAt else { return nil }
        while children.count < workers {
            if let reason = ForkSafety.unsafeReason() { return reason }
            let supervisorPID = getpid()
            let pid = fork()
            if pid == 0 {
                // A worker must not outlive its supervisor (nothing would replace or stop it,
                // and it would keep serving a socket whose owner is gone). The death signal is
                // tied to the forking thread, the supervisor's only one. If the supervisor died
                // before prctl took effect, the parent is already someone else: leave now.
                if fastcgi_support_set_parent_death_signal(SIGTERM) != 0 || getppid() != supervisorPID {
                    _exit(0)
                }
                var none = sigset_t()
                sigemptyset(&none)
                signal(SIGCHLD, SIG_DFL)
                sigprocmask(SIG_SETMASK, &none, nil)
                // Keep SIGTERM/SIGINT pending until the worker installs its handler.
                var stopSignals = sigset_t()
                sigemptyset(&stopSignals)
                sigaddset(&stopSignals, SIGTERM)
                sigaddset(&stopSignals, SIGINT)
                sigprocmask(SIG_BLOCK, &stopSignals, nil)
                work()
                // _exit, not exit: atexit handlers and stdio buffers belong to the supervisor
                // and must not run (or flush) a second time in each worker.
                _exit(0)
            }
            guard pid > 0 else {
                log.error("fork_failed", ["errno": Int(errno)])
                nextSpawnAt = now + 1_000_000_000
                return nil
            }
            children[pid] = now
        }
        return nil
    }

    private func reap(stopping: Bool) {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { return }
            guard let startedAt = children.removeValue(forKey: pid) else { continue }
            let signalled = (status & 0x7f) != 0
            let code = signalled ? Int(status & 0x7f) : Int((status >> 8) & 0xff)
            if stopping {
                continue
            }
            log.error("worker_exited", ["worker_pid": Int(pid), signalled ? "signal" : "exit_code": code])
            // A worker that dies young is probably failing at start: slow the restarts down.
            let lived = monotonicNanoseconds() - startedAt
            if lived < 1_000_000_000 {
                restartDelay = min(max(restartDelay * 2, 250_000_000), 30_000_000_000)
            } else {
                restartDelay = 0
            }
            nextSpawnAt = monotonicNanoseconds() + restartDelay
        }
    }

    private func stopChildren(watched: inout sigset_t) {
        log.info("stopping", ["workers": children.count])
        for pid in children.keys { kill(pid, SIGTERM) }
        let deadline = monotonicNanoseconds() + shutdownGrace
        while !children.isEmpty && monotonicNanoseconds() < deadline {
            var info = siginfo_t()
            var timeout = timespec(tv_sec: 0, tv_nsec: 100_000_000)
            _ = sigtimedwait(&watched, &info, &timeout)
            reap(stopping: true)
        }
        for pid in children.keys {
            log.warning("worker_killed", ["worker_pid": Int(pid)])
            kill(pid, SIGKILL)
        }
        while !children.isEmpty {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid <= 0 { break }
            children.removeValue(forKey: pid)
        }
    }
}
