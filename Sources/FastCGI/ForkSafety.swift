import Foundation

/// Checks the supervisor runs before every fork. A worker is a copy of the supervisor, so a
/// database connection (or any socket-backed handle) opened before fork would be shared by every
/// worker, their traffic interleaved on one stream. Libraries that own such handles register a
/// check returning why forking is unsafe now (`nil` when it is safe); the runtime cannot import
/// them, so they come to it.
public enum ForkSafety {
    private final class Checks: @unchecked Sendable {
        let lock = NSLock()
        var checks: [@Sendable () -> String?] = []
    }

    private static let registry = Checks()

    public static func register(_ check: @escaping @Sendable () -> String?) {
        registry.lock.lock()
        defer { registry.lock.unlock() }
        registry.checks.append(check)
    }

    /// The first registered check's reason, or `nil` when every check allows forking.
    static func unsafeReason() -> String? {
        registry.lock.lock()
        let checks = registry.checks
        registry.lock.unlock()
        for check in checks {
            if let reason = check() { return reason }
        }
        return nil
    }
}
