import Foundation
import HTTPClient

/// How often and how patiently a call is tried again. Bounded: at most `maxAttempts` requests
/// per call. What is retried (see `SmokeballClient`): a 429 for every call (Smokeball did not
/// process it); for idempotent calls also 5xx, time-outs and dropped connections; for every
/// call a connection that could not be made (nothing was sent).
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    /// The first back-off; each further one doubles, up to `maxDelay`.
    public var baseDelay: Double
    public var maxDelay: Double
    /// A `Retry-After` longer than this is not waited for (the call fails instead).
    public var maxRetryAfter: Double

    public init(maxAttempts: Int = 4, baseDelay: Double = 0.5, maxDelay: Double = 8, maxRetryAfter: Double = 30) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxRetryAfter = maxRetryAfter
    }

    public static let standard = RetryPolicy()

    /// The back-off before attempt `attempt + 1`: exponential with "equal jitter" (half fixed,
    /// half random), so many clients refused at once do not come back at once.
    public func backoff(afterAttempt attempt: Int) -> Double {
        let exponential = min(maxDelay, baseDelay * pow(2, Double(max(0, attempt - 1))))
        return exponential / 2 + Double.random(in: 0...(exponential / 2))
    }

    /// Seconds a `Retry-After` asks for: delta-seconds or an HTTP date; nil when absent or unreadable.
    public static func retryAfter(_ response: HTTPResponse, now: Date = Date()) -> Double? {
        guard let text = response.header("Retry-After")?.trimmingCharacters(in: .whitespaces), !text.isEmpty else {
            return nil
        }
        if let seconds = Int(text), seconds >= 0 { return Double(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: text) else { return nil }
        return max(0, date.timeIntervalSince(now))
    }
}
