import CFastCGISupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// SIGTERM/SIGINT for a worker process that waits on file descriptors (the FastCGI worker, the
/// job worker). The signals stay blocked except inside `wait`, which unblocks them atomically for
/// the wait only, so a stop that arrives at any moment is either seen before waiting or ends the
/// wait: never lost, and never a busy loop.
public enum StopSignals {
    public enum Wake: Equatable, Sendable {
        case readable
        case stopRequested
        case timedOut
    }

    /// Blocks SIGTERM and SIGINT in the calling thread (threads it starts inherit that) and
    /// installs the handler that records them. False, with errno, when it cannot.
    public static func install() -> Bool {
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGTERM)
        sigaddset(&stopSignals, SIGINT)
        sigprocmask(SIG_BLOCK, &stopSignals, nil)
        return fastcgi_support_install_stop_handler() == 0
    }

    /// Whether a stop signal has been handled. One that arrived while blocked is handled only
    /// inside a wait: see `checkPending`.
    public static var isRequested: Bool { fastcgi_support_stop_requested() != 0 }

    /// Lets a stop signal that is pending (blocked) be handled now, and says whether a stop was
    /// requested: for a loop that may go a while between waits.
    public static func checkPending() -> Bool {
        (try? wait(readable: -1, timeout: 0)) == .stopRequested || isRequested
    }

    /// Waits until `fd` is readable, a stop is requested, or `timeout` seconds pass (nil: no
    /// limit). Throws the errno on failure.
    public static func wait(readable fd: Int32, timeout: TimeInterval?) throws -> Wake {
        let milliseconds: Int32 = timeout.map { Int32(min(max(0, $0) * 1000, 86_400_000).rounded(.up)) } ?? -1
        switch fastcgi_support_wait_readable_for(fd, milliseconds) {
        case 1: return .readable
        case 0: return .stopRequested
        case 2: return .timedOut
        default: throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }
}
