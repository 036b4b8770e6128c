import Foundation
import PostgreSQL

/// A job kind whose jobs the worker itself enqueues on a schedule (`reconcile_firm`). An idle
/// worker asks it before sleeping whenever the time it named has come, and its sleep ends by
/// then at the latest, so a scheduled time is met without polling.
public protocol ScheduledJobHandler: JobHandler {
    /// Enqueues whatever is due now (safe to call from any number of workers at once); returns
    /// the delay, in seconds, until it should be asked again.
    func schedule(_ database: Database) throws -> TimeInterval
}
